#!/usr/bin/env python3
"""Check the HTTP routes of template.yaml with SAM CLI's own route discovery (no Docker).

This is the same discovery `sam local start-api` runs before it serves anything, so a template or
SAM CLI change that would break it (or silently drop a route) fails here.

Usage: python3 .ci/sam_routes.py [TEMPLATE] [EXPECTED]
  TEMPLATE  defaults to template.yaml in the repository root
  EXPECTED  defaults to .ci/expected-routes.txt (lines `METHOD PATH FUNCTION`, `#` comments)

Prints every discovered route, then exits 0 only if every expected route is present, mapped to the
expected function, and no route is discovered that the expected list does not name.
"""

import os
import sys

os.environ.setdefault("SAM_CLI_TELEMETRY", "0")

from samcli.lib.providers.api_provider import ApiProvider  # noqa: E402
from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What SAM CLI expands `ANY` to (samcli.local.apigw.route.Route.ANY_HTTP_METHODS).
ANY_METHODS = frozenset(["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"])


def read_expected(path):
    expected = []
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) != 3:
                sys.exit(f"{path}:{lineno}: expected `METHOD PATH FUNCTION`, got {raw.rstrip()!r}")
            method, route_path, function = parts
            method = method.upper()
            methods = ANY_METHODS if method in ("ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD") else {method}
            expected.append((method, frozenset(methods), route_path, function))
    if not expected:
        sys.exit(f"{path}: no routes listed")
    return expected


def main(argv):
    template = argv[1] if len(argv) > 1 else os.path.join(ROOT, "template.yaml")
    expected_file = argv[2] if len(argv) > 2 else os.path.join(ROOT, ".ci", "expected-routes.txt")

    stacks, _ = SamLocalStackProvider.get_stacks(template)
    routes = list(ApiProvider(stacks).api.routes)

    # (path, function) -> set of methods; a path served by two functions shows up twice.
    found = {}
    for route in sorted(routes, key=lambda r: (r.path, r.function_name or "")):
        methods = sorted(route.methods)
        print(f"{route.event_type:8} {','.join(methods):42} {route.path:45} {route.function_name}")
        found.setdefault((route.path, route.function_name), set()).update(m.upper() for m in methods)
    print(f"{len(routes)} route(s) discovered by SAM CLI in {os.path.relpath(template)}")

    failures = []
    claimed = set()
    for method, methods, route_path, function in read_expected(expected_file):
        have = found.get((route_path, function))
        if have is None:
            others = sorted(f for (p, f) in found if p == route_path)
            where = f" (served by {', '.join(map(str, others))})" if others else ""
            failures.append(f"missing: {method} {route_path} -> {function}{where}")
            continue
        claimed.add((route_path, function))
        # CORS adds OPTIONS to every route, so compare the methods the line asks for.
        lacking = sorted(methods - have)
        if lacking:
            failures.append(f"{route_path} -> {function} lacks {', '.join(lacking)}")

    for route_path, function in sorted(set(found) - claimed, key=str):
        failures.append(
            f"unexpected: {route_path} -> {function} (add it to {os.path.relpath(expected_file)})"
        )

    if failures:
        print("\nroute check FAILED:", file=sys.stderr)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
        return 1
    print("route check passed: every expected route is present")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

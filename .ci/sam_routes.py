#!/usr/bin/env python3
"""Check the routes of template.yaml: HTTP routes with SAM CLI's own route discovery (no Docker),
WebSocket routes by reading the template.

HTTP: this is the same discovery `sam local start-api` runs before it serves anything, so a template
or SAM CLI change that would break it (or silently drop a route) fails here. The raw
AWS::ApiGatewayV2 WebSocket resources beside the HTTP API are a known hazard for it (aws-sam-cli
issue 2610): SAM CLI picks ONE provider for the whole template, by the first API-ish resource it
meets. While that is a Serverless resource (HttpApi, a Function), the raw WebSocket resources are
ignored; if a raw AWS::ApiGatewayV2 resource came first, discovery would read `$connect` as an HTTP
route key and crash. This script checks which provider is chosen and says so plainly.

WebSocket: the template (parsed with SAM CLI's own YAML loader, which understands !Ref, !Sub, ...)
must hold an AWS::ApiGatewayV2::Api with ProtocolType WEBSOCKET whose routes are exactly the
expected `WEBSOCKET` lines, each targeting an AWS_PROXY integration that invokes the expected
function, and `$connect` must carry no IAM auth or authorizer (the function checks the token).

Usage: python3 .ci/sam_routes.py [TEMPLATE] [EXPECTED]
  TEMPLATE  defaults to template.yaml in the repository root
  EXPECTED  defaults to .ci/expected-routes.txt (lines `METHOD PATH FUNCTION`, where METHOD
            `WEBSOCKET` names a WebSocket route key; `#` comments)

Prints every discovered route, then exits 0 only if every expected route is present, mapped to the
expected function, and no route is discovered that the expected list does not name.
"""

import os
import re
import sys

os.environ.setdefault("SAM_CLI_TELEMETRY", "0")

from samcli.lib.providers.api_provider import ApiProvider  # noqa: E402
from samcli.lib.providers.sam_api_provider import SamApiProvider  # noqa: E402
from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider  # noqa: E402
from samcli.yamlhelper import parse_yaml_file  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What SAM CLI expands `ANY` to (samcli.local.apigw.route.Route.ANY_HTTP_METHODS).
ANY_METHODS = frozenset(["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"])
# The METHOD of an expected-routes line that names a WebSocket route key.
WEBSOCKET = "WEBSOCKET"


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
            if method == WEBSOCKET:
                expected.append((method, frozenset(), route_path, function))
                continue
            methods = ANY_METHODS if method in ("ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD") else {method}
            expected.append((method, frozenset(methods), route_path, function))
    if not expected:
        sys.exit(f"{path}: no routes listed")
    return expected


def referenced_ids(value):
    """Logical ids an intrinsic-laden value refers to (Ref, Fn::GetAtt, Fn::Sub, nested)."""
    ids = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                ids.add(inner)
            elif key == "Fn::GetAtt":
                target = inner[0] if isinstance(inner, list) else str(inner).split(".")[0]
                ids.add(target)
            elif key == "Fn::Sub":
                text, variables = (inner[0], inner[1]) if isinstance(inner, list) else (inner, {})
                for name in re.findall(r"\$\{(?!!)([^}]+)\}", text):
                    name = name.split(".")[0]
                    if name not in variables and not name.startswith("AWS::"):
                        ids.add(name)
                ids |= referenced_ids(variables)
            else:
                ids |= referenced_ids(inner)
    elif isinstance(value, list):
        for inner in value:
            ids |= referenced_ids(inner)
    return {i for i in ids if not i.startswith("AWS::")}


def websocket_routes(template):
    """{route key: (function logical ids, problems)} for the WebSocket APIs of the template."""
    resources = parse_yaml_file(template).get("Resources") or {}

    def of_type(type_name):
        return {k: v for k, v in resources.items() if isinstance(v, dict) and v.get("Type") == type_name}

    apis = {
        k for k, v in of_type("AWS::ApiGatewayV2::Api").items()
        if (v.get("Properties") or {}).get("ProtocolType") == "WEBSOCKET"
    }
    integrations = of_type("AWS::ApiGatewayV2::Integration")
    found = {}
    for logical_id, route in of_type("AWS::ApiGatewayV2::Route").items():
        props = route.get("Properties") or {}
        if not referenced_ids(props.get("ApiId")) & apis:
            continue
        key = props.get("RouteKey")
        problems = []
        functions = set()
        targets = referenced_ids(props.get("Target")) & set(integrations)
        if not targets:
            problems.append(f"{logical_id}: Target names no AWS::ApiGatewayV2::Integration")
        for target in sorted(targets):
            iprops = integrations[target].get("Properties") or {}
            if iprops.get("IntegrationType") != "AWS_PROXY":
                problems.append(f"{target}: IntegrationType is {iprops.get('IntegrationType')!r}, not AWS_PROXY")
            uri_ids = referenced_ids(iprops.get("IntegrationUri"))
            functions |= {
                i for i in uri_ids
                if (resources.get(i) or {}).get("Type") in ("AWS::Serverless::Function", "AWS::Lambda::Function")
            }
        if key == "$connect":
            if props.get("AuthorizationType", "NONE") != "NONE" or props.get("AuthorizerId"):
                problems.append(
                    f"{logical_id}: $connect must have AuthorizationType NONE and no AuthorizerId "
                    "(the function authenticates the token itself)"
                )
        found[key] = (functions, problems)
    return apis, found


def check_websocket(template, expected):
    failures = []
    apis, found = websocket_routes(template)
    if not apis:
        return ["no AWS::ApiGatewayV2::Api with ProtocolType WEBSOCKET in the template"]
    for key, (functions, _) in sorted(found.items(), key=lambda kv: str(kv[0])):
        print(f"{WEBSOCKET:9}{'':43}{str(key):45} {', '.join(sorted(functions)) or '-'}")
    print(f"{len(found)} WebSocket route(s) in {os.path.relpath(template)} (API {', '.join(sorted(apis))})")
    claimed = set()
    for _, _, key, function in expected:
        if key not in found:
            failures.append(f"missing: WebSocket route {key} -> {function}")
            continue
        claimed.add(key)
        functions, problems = found[key]
        failures.extend(problems)
        if functions != {function}:
            failures.append(
                f"WebSocket route {key} invokes {', '.join(sorted(functions)) or 'no function'}, expected {function}"
            )
    for key in sorted(set(found) - claimed, key=str):
        failures.append(f"unexpected: WebSocket route {key} (add a `{WEBSOCKET} {key} FUNCTION` line)")
    return list(dict.fromkeys(failures))  # one line per problem, even when routes share it


def main(argv):
    template = argv[1] if len(argv) > 1 else os.path.join(ROOT, "template.yaml")
    expected_file = argv[2] if len(argv) > 2 else os.path.join(ROOT, ".ci", "expected-routes.txt")
    expected = read_expected(expected_file)
    expected_http = [e for e in expected if e[0] != WEBSOCKET]
    expected_ws = [e for e in expected if e[0] == WEBSOCKET]

    stacks, _ = SamLocalStackProvider.get_stacks(template)
    provider = ApiProvider.find_api_provider(stacks)
    if not isinstance(provider, SamApiProvider):
        print(
            f"route check FAILED: SAM CLI would read {os.path.relpath(template)} with "
            f"{type(provider).__name__}, not SamApiProvider, because a raw AWS::ApiGateway* resource "
            "comes before every AWS::Serverless::HttpApi/Function in Resources. It would then skip "
            "the HttpApi events and crash on the WebSocket route keys (aws-sam-cli issue 2610). "
            "Keep HttpApi (or a Serverless function) first in Resources.",
            file=sys.stderr,
        )
        return 1
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
    for method, methods, route_path, function in expected_http:
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

    print()
    failures.extend(check_websocket(template, expected_ws))

    if failures:
        print("\nroute check FAILED:", file=sys.stderr)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
        return 1
    print("route check passed: every expected HTTP and WebSocket route is present")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

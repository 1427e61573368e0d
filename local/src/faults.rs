//! Faults the local `@connections` endpoint can be told to inject into `PostToConnection`, so
//! that the product's push meets what API Gateway may answer: server errors, throttles and
//! slow answers. Off unless asked for (`--push-faults`, `BLOCKCHAT_PUSH_FAULTS`, or
//! [`crate::RunningGateway::set_push_faults`] at run time).

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Shares of posts (each from 0 to 1) that go wrong, and how.
///
/// A post is first held for `slow_delay` when it draws `slow`; then, from a second draw, it is
/// answered 500 (`fail`) or 429 (`throttle`), or handled as usual. A failed or throttled post
/// writes nothing to the socket, so a retry cannot show a client the frame twice.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PushFaults {
    /// Answered 500 `InternalServerErrorException`.
    pub fail: f64,
    /// Answered 429 `TooManyRequestsException`, as API Gateway answers a throttled call.
    pub throttle: f64,
    /// Held for `slow_delay` before any answer.
    pub slow: f64,
    pub slow_delay: Duration,
}

/// What a [`PushFaults`] specification gets wrong.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum FaultsError {
    #[error("`{0}` is not a fault; expected fail=SHARE, throttle=SHARE or slow=SHARE:DELAY")]
    Unknown(String),
    #[error("`{0}`: a share is a number from 0 to 1")]
    Share(String),
    #[error("`{0}`: a delay is a whole number of ms or s (300ms, 2s)")]
    Delay(String),
    #[error("fail and throttle together take more than every post ({0})")]
    TooMuch(f64),
}

impl PushFaults {
    /// No fault at all.
    pub const NONE: Self = Self {
        fail: 0.0,
        throttle: 0.0,
        slow: 0.0,
        slow_delay: Duration::ZERO,
    };

    pub fn is_none(&self) -> bool {
        self.fail == 0.0 && self.throttle == 0.0 && (self.slow == 0.0 || self.slow_delay.is_zero())
    }
}

/// `fail=0.1,throttle=0.2,slow=0.1:300ms`, any of the three, in any order; `none` or an empty
/// string for no fault.
impl FromStr for PushFaults {
    type Err = FaultsError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut faults = Self::NONE;
        let spec = spec.trim();
        if spec.is_empty() || spec.eq_ignore_ascii_case("none") {
            return Ok(faults);
        }
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| FaultsError::Unknown(part.to_owned()))?;
            match name.trim() {
                "fail" => faults.fail = share(value)?,
                "throttle" => faults.throttle = share(value)?,
                "slow" => {
                    let (value, delay) = value
                        .split_once(':')
                        .ok_or_else(|| FaultsError::Delay(part.to_owned()))?;
                    faults.slow = share(value)?;
                    faults.slow_delay = parse_delay(delay)?;
                }
                _ => return Err(FaultsError::Unknown(part.to_owned())),
            }
        }
        if faults.fail + faults.throttle > 1.0 {
            return Err(FaultsError::TooMuch(faults.fail + faults.throttle));
        }
        Ok(faults)
    }
}

impl fmt::Display for PushFaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_none() {
            return f.write_str("none");
        }
        write!(
            f,
            "fail={},throttle={},slow={}:{}ms",
            self.fail,
            self.throttle,
            self.slow,
            self.slow_delay.as_millis()
        )
    }
}

fn share(value: &str) -> Result<f64, FaultsError> {
    match value.trim().parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(FaultsError::Share(value.to_owned())),
    }
}

fn parse_delay(value: &str) -> Result<Duration, FaultsError> {
    let value = value.trim();
    let (number, unit) = match value.strip_suffix("ms") {
        Some(number) => (number, 1),
        None => match value.strip_suffix('s') {
            Some(number) => (number, 1000),
            None => return Err(FaultsError::Delay(value.to_owned())),
        },
    };
    number
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .map(Duration::from_millis)
        .ok_or_else(|| FaultsError::Delay(value.to_owned()))
}

/// What the endpoint did to the posts it was sent, since the gateway started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PushFaultCounts {
    /// Every `POST @connections/{id}` that reached the endpoint.
    pub posts: u64,
    /// Answered 500.
    pub failed: u64,
    /// Answered 429.
    pub throttled: u64,
    /// Held for the slow delay.
    pub slowed: u64,
}

/// What to do to one post.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub delay: Option<Duration>,
    pub answer: Option<Injected>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Injected {
    Fail,
    Throttle,
}

/// The faults in force and the counts, shared by the endpoint and the gateway's handle.
#[derive(Clone, Debug, Default)]
pub(crate) struct FaultSwitch {
    faults: Arc<RwLock<PushFaults>>,
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    posts: AtomicU64,
    failed: AtomicU64,
    throttled: AtomicU64,
    slowed: AtomicU64,
}

impl FaultSwitch {
    pub fn new(faults: PushFaults) -> Self {
        Self {
            faults: Arc::new(RwLock::new(faults)),
            counts: Arc::default(),
        }
    }

    pub fn set(&self, faults: PushFaults) {
        match self.faults.write() {
            Ok(mut current) => *current = faults,
            Err(poisoned) => *poisoned.into_inner() = faults,
        }
        tracing::info!(%faults, "@connections: push faults set");
    }

    pub fn get(&self) -> PushFaults {
        match self.faults.read() {
            Ok(current) => *current,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    pub fn counts(&self) -> PushFaultCounts {
        PushFaultCounts {
            posts: self.counts.posts.load(Ordering::Relaxed),
            failed: self.counts.failed.load(Ordering::Relaxed),
            throttled: self.counts.throttled.load(Ordering::Relaxed),
            slowed: self.counts.slowed.load(Ordering::Relaxed),
        }
    }

    /// Draws what happens to one post, and counts it.
    pub fn draw(&self) -> Verdict {
        let faults = self.get();
        self.counts.posts.fetch_add(1, Ordering::Relaxed);
        let delay = (faults.slow > 0.0 && !faults.slow_delay.is_zero() && chance() < faults.slow)
            .then_some(faults.slow_delay);
        if delay.is_some() {
            self.counts.slowed.fetch_add(1, Ordering::Relaxed);
        }
        let roll = chance();
        let answer = if roll < faults.fail {
            self.counts.failed.fetch_add(1, Ordering::Relaxed);
            Some(Injected::Fail)
        } else if roll < faults.fail + faults.throttle {
            self.counts.throttled.fetch_add(1, Ordering::Relaxed);
            Some(Injected::Throttle)
        } else {
            None
        };
        Verdict { delay, answer }
    }
}

/// A number in `[0, 1)`.
fn chance() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 1.0;
    }
    // 53 random bits: every value a double can hold exactly in [0, 1).
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specifications_parse_in_any_order() {
        let faults: PushFaults = "slow=0.1:300ms, throttle=0.2,fail=0.1"
            .parse()
            .expect("valid");
        assert_eq!(
            faults,
            PushFaults {
                fail: 0.1,
                throttle: 0.2,
                slow: 0.1,
                slow_delay: Duration::from_millis(300),
            }
        );
        let slow: PushFaults = "slow=1:2s".parse().expect("valid");
        assert_eq!(slow.slow_delay, Duration::from_secs(2));
        assert_eq!("none".parse::<PushFaults>(), Ok(PushFaults::NONE));
        assert_eq!("".parse::<PushFaults>(), Ok(PushFaults::NONE));
        assert_eq!(
            faults.to_string().parse::<PushFaults>(),
            Ok(faults),
            "what it prints reads back"
        );
    }

    #[test]
    fn bad_specifications_say_what_is_wrong() {
        for (spec, expected) in [
            ("fail=2", FaultsError::Share("2".into())),
            ("fail=-0.1", FaultsError::Share("-0.1".into())),
            ("throttle=lots", FaultsError::Share("lots".into())),
            ("drop=0.1", FaultsError::Unknown("drop=0.1".into())),
            ("fail", FaultsError::Unknown("fail".into())),
            ("slow=0.5", FaultsError::Delay("slow=0.5".into())),
            ("slow=0.5:soon", FaultsError::Delay("soon".into())),
            ("fail=0.6,throttle=0.6", FaultsError::TooMuch(1.2)),
        ] {
            assert_eq!(spec.parse::<PushFaults>(), Err(expected), "{spec}");
        }
    }

    #[test]
    fn every_post_fails_at_a_share_of_one_and_none_at_zero() {
        let switch = FaultSwitch::new("fail=1".parse().expect("valid"));
        for _ in 0..100 {
            assert_eq!(switch.draw().answer, Some(Injected::Fail));
        }
        switch.set("throttle=1".parse().expect("valid"));
        assert_eq!(switch.draw().answer, Some(Injected::Throttle));
        switch.set(PushFaults::NONE);
        for _ in 0..100 {
            assert_eq!(
                switch.draw(),
                Verdict {
                    delay: None,
                    answer: None
                }
            );
        }
        assert_eq!(
            switch.counts(),
            PushFaultCounts {
                posts: 201,
                failed: 100,
                throttled: 1,
                slowed: 0
            }
        );
    }
}

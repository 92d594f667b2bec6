//! Lease durations in ARR's `h:m:s` form.

/// A lease string that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// Not of the form `h:m:s` with whole numbers (minutes and seconds below 60).
    #[error("lease '{0}' is not h:m:s (for example 4:0:0)")]
    Syntax(String),
    /// Under one second, or above the host's maximum.
    #[error(
        "lease {} is outside the allowed range {} to {}",
        format_lease(*got_ms),
        format_lease(MIN_LEASE_MS),
        format_lease(*max_ms)
    )]
    OutOfRange {
        /// What was asked for, in ms.
        got_ms: u64,
        /// The configured maximum, in ms.
        max_ms: u64,
    },
}

/// The shortest lease: one second.
pub const MIN_LEASE_MS: u64 = 1000;

/// Checks a lease length against the allowed range, [`MIN_LEASE_MS`] to `max_ms`.
pub fn check_lease(ms: u64, max_ms: u64) -> Result<u64, LeaseError> {
    if ms < MIN_LEASE_MS || ms > max_ms {
        return Err(LeaseError::OutOfRange { got_ms: ms, max_ms });
    }
    Ok(ms)
}

/// Parses `h:m:s` into milliseconds and checks it against the allowed range (see
/// [`check_lease`]).
pub fn parse_lease(s: &str, max_ms: u64) -> Result<u64, LeaseError> {
    let syntax = || LeaseError::Syntax(s.chars().take(32).collect());
    let parts: Vec<&str> = s.trim().split(':').collect();
    let [h, m, sec] = parts.as_slice() else {
        return Err(syntax());
    };
    let num = |p: &str| -> Result<u64, LeaseError> {
        if p.is_empty() || p.len() > 6 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        p.parse().map_err(|_| syntax())
    };
    let (h, m, sec) = (num(h)?, num(m)?, num(sec)?);
    if m >= 60 || sec >= 60 {
        return Err(syntax());
    }
    check_lease(((h * 60 + m) * 60 + sec) * 1000, max_ms)
}

/// Formats milliseconds as `h:m:s` (whole seconds, rounded down).
pub fn format_lease(ms: u64) -> String {
    let s = ms / 1000;
    format!("{}:{}:{}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const DAY: u64 = 24 * 3600 * 1000;

    #[test]
    fn leases_parse_and_print() {
        assert_eq!(parse_lease("4:0:0", DAY).unwrap(), 4 * 3600 * 1000);
        assert_eq!(parse_lease("0:1:30", DAY).unwrap(), 90_000);
        assert_eq!(parse_lease("24:00:00", DAY).unwrap(), DAY);
        assert_eq!(format_lease(90_000), "0:1:30");
        for bad in [
            "",
            "4",
            "4:0",
            "a:b:c",
            "1:60:0",
            "1:0:60",
            "-1:0:0",
            "1:0:0:0",
            "9999999:0:0",
        ] {
            assert!(
                matches!(parse_lease(bad, DAY), Err(LeaseError::Syntax(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_lease("0:0:0", DAY),
            Err(LeaseError::OutOfRange { .. })
        ));
        let e = parse_lease("25:0:0", DAY).unwrap_err();
        assert_eq!(
            e.to_string(),
            "lease 25:0:0 is outside the allowed range 0:0:1 to 24:0:0"
        );
        assert_eq!(
            check_lease(0, DAY).unwrap_err().to_string(),
            "lease 0:0:0 is outside the allowed range 0:0:1 to 24:0:0"
        );
        assert_eq!(
            check_lease(500, DAY),
            Err(LeaseError::OutOfRange {
                got_ms: 500,
                max_ms: DAY
            })
        );
        assert_eq!(check_lease(DAY, DAY), Ok(DAY));
    }
}

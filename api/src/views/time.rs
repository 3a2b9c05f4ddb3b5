//! Time as clients see it: stored times are milliseconds since the epoch,
//! rendered like the old Flask system did (`2025-11-20T13:05:20.884405`:
//! UTC, microseconds, no offset), so clients parsing them keep working.

/// Renders ms since the epoch as `YYYY-MM-DDTHH:MM:SS.ffffff` (UTC).
pub fn iso_ms(ms: u64) -> String {
    let Ok(ms) = i64::try_from(ms) else { return String::new() };
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(ts) => {
            let dt = ts.to_zoned(jiff::tz::TimeZone::UTC).datetime();
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}",
                dt.year(),
                dt.month(),
                dt.day(),
                dt.hour(),
                dt.minute(),
                dt.second(),
                dt.subsec_nanosecond() / 1000
            )
        }
        Err(_) => String::new(),
    }
}

/// Now, in ms since the epoch.
pub fn now_ms() -> u64 {
    u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_the_old_system() {
        assert_eq!(iso_ms(1_763_643_920_884), "2025-11-20T13:05:20.884000");
        assert_eq!(iso_ms(0), "1970-01-01T00:00:00.000000");
    }
}

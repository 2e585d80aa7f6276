//! Durations as manifests write them: Gateway API's GEP-2257 form (`1h30m`, `500ms`,
//! `10s`) and protobuf JSON seconds as Istio writes them (`0.5s`, `1.25s`).

use std::time::Duration;

pub fn parse(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration (like 500ms, 1.5s, 2m, 1h)");
    if s.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(digits);
        let value: f64 = num.parse().map_err(|_| bad())?;
        let (unit, tail) = if let Some(t) = tail.strip_prefix("ms") {
            (0.001, t)
        } else if let Some(t) = tail.strip_prefix('s') {
            (1.0, t)
        } else if let Some(t) = tail.strip_prefix('m') {
            (60.0, t)
        } else if let Some(t) = tail.strip_prefix('h') {
            (3600.0, t)
        } else {
            return Err(bad());
        };
        total += Duration::from_secs_f64(value * unit);
        rest = tail;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::parse;
    use std::time::Duration;

    #[test]
    fn forms() {
        let ms = Duration::from_millis;
        assert_eq!(parse("500ms"), Ok(ms(500)));
        assert_eq!(parse("0.5s"), Ok(ms(500)));
        assert_eq!(parse("10s"), Ok(ms(10_000)));
        assert_eq!(parse("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse("1h"), Ok(ms(3_600_000)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        for bad in ["", "5", "s", "1x", "1.2.3s", "-1s"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}

//! Client-side checks of EventBridge expressions, which moto does not validate:
//! schedule expressions (`rate(...)`, six-field `cron(...)`) and event patterns.
//! Each returns a message and a hint for the caller to position.

use serde_json::Value;

pub type Problem = (String, String);

/// `rate(5 minutes)` or `cron(0 8 * * ? *)`, as EventBridge accepts them.
pub fn schedule(expr: &str) -> Result<(), Problem> {
    let e = expr.trim();
    if let Some(body) = e.strip_prefix("rate(").and_then(|r| r.strip_suffix(')')) {
        rate(body.trim())
    } else if let Some(body) = e.strip_prefix("cron(").and_then(|r| r.strip_suffix(')')) {
        cron(body.trim())
    } else {
        Err((
            format!("`{expr}` is not a schedule expression"),
            "use rate(N unit), e.g. rate(5 minutes), or cron(min hour day-of-month month day-of-week year)".into(),
        ))
    }
}

fn rate(body: &str) -> Result<(), Problem> {
    let mut parts = body.split_whitespace();
    let (Some(n), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err((
            format!("`rate({body})` needs a number and a unit"),
            "e.g. rate(1 hour) or rate(15 minutes)".into(),
        ));
    };
    let n: u64 = n.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
        (
            format!("`rate({body})`: `{n}` is not a positive whole number"),
            "e.g. rate(1 hour) or rate(15 minutes)".into(),
        )
    })?;
    let (singular, plural) = match unit {
        "minute" | "minutes" => ("minute", "minutes"),
        "hour" | "hours" => ("hour", "hours"),
        "day" | "days" => ("day", "days"),
        _ => {
            return Err((
                format!("`rate({body})`: unknown unit `{unit}`"),
                "the units are minute(s), hour(s) and day(s)".into(),
            ));
        }
    };
    let want = if n == 1 { singular } else { plural };
    if unit != want {
        return Err((
            format!("`rate({body})` must say `{n} {want}`"),
            "EventBridge wants the singular unit for 1 and the plural otherwise".into(),
        ));
    }
    Ok(())
}

const CRON_FIELDS: [(&str, u32, u32); 6] = [
    ("minutes", 0, 59),
    ("hours", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 1, 7),
    ("year", 1970, 2199),
];
const MONTHS: [&str; 12] = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn cron(body: &str) -> Result<(), Problem> {
    let fields: Vec<&str> = body.split_whitespace().collect();
    let hint =
        "EventBridge cron has six fields: minutes hours day-of-month month day-of-week year, e.g. cron(0 8 * * ? *)";
    if fields.len() != 6 {
        return Err((format!("`cron({body})` has {} fields, not 6", fields.len()), hint.into()));
    }
    let (dom, dow) = (fields[2], fields[4]);
    if (dom == "?") == (dow == "?") {
        return Err((
            format!("`cron({body})`: exactly one of day-of-month and day-of-week must be `?`"),
            "use `?` in the one you do not restrict, e.g. cron(0 8 * * ? *) or cron(0 8 ? * MON-FRI *)".into(),
        ));
    }
    for (i, f) in fields.iter().enumerate() {
        let (name, min, max) = CRON_FIELDS[i];
        if !cron_field(f, i, min, max) {
            return Err((
                format!("`cron({body})`: `{f}` is not a valid {name} field"),
                format!("{name} takes values {min}-{max}, `*`, lists, ranges and `/` steps"),
            ));
        }
    }
    Ok(())
}

fn cron_value(v: &str, field: usize, min: u32, max: u32) -> bool {
    let named = match field {
        3 => MONTHS.iter().position(|m| m.eq_ignore_ascii_case(v)).map(|i| i as u32 + 1),
        4 => DAYS.iter().position(|d| d.eq_ignore_ascii_case(v)).map(|i| i as u32 + 1),
        _ => None,
    };
    named.or_else(|| v.parse().ok()).is_some_and(|n| (min..=max).contains(&n))
}

fn cron_field(f: &str, field: usize, min: u32, max: u32) -> bool {
    if f == "*" || (f == "?" && (field == 2 || field == 4)) {
        return true;
    }
    // Day-of-month `L`/`W` and day-of-week `L`/`#` forms.
    if field == 2 && (f == "L" || f.strip_suffix('W').is_some_and(|d| cron_value(d, field, min, max))) {
        return true;
    }
    if field == 4 {
        if let Some((d, n)) = f.split_once('#') {
            return cron_value(d, field, min, max) && n.parse::<u32>().is_ok_and(|n| (1..=5).contains(&n));
        }
        if let Some(d) = f.strip_suffix('L') {
            return d.is_empty() || cron_value(d, field, min, max);
        }
    }
    f.split(',').all(|item| {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        if step.is_some_and(|s| s.parse::<u32>().map_or(true, |s| s == 0)) {
            return false;
        }
        match range.split_once('-') {
            _ if range == "*" => step.is_some(),
            Some((a, b)) => cron_value(a, field, min, max) && cron_value(b, field, min, max),
            None => cron_value(range, field, min, max),
        }
    })
}

const PATTERN_OPERATORS: &[&str] =
    &["prefix", "suffix", "anything-but", "numeric", "exists", "cidr", "equals-ignore-case", "wildcard"];

/// An EventBridge (or Lambda filter) event pattern: a non-empty object whose
/// leaves are arrays of values or of `{operator: ...}` objects.
pub fn pattern(p: &Value) -> Result<(), Problem> {
    let hint = "patterns match with arrays at the leaves, e.g. { source: [orders.app], detail: { status: [created] } }";
    let Value::Object(m) = p else {
        return Err(("an event pattern must be a mapping".into(), hint.into()));
    };
    if m.is_empty() {
        return Err(("an event pattern must not be empty".into(), hint.into()));
    }
    walk(p, "", hint)
}

fn walk(v: &Value, path: &str, hint: &str) -> Result<(), Problem> {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match child {
                    Value::Object(_) => walk(child, &p, hint)?,
                    Value::Array(items) => {
                        if items.is_empty() {
                            return Err((format!("pattern field `{p}` matches nothing (empty list)"), hint.into()));
                        }
                        for item in items {
                            if let Value::Object(op) = item {
                                let Some(name) = op.keys().next().filter(|_| op.len() == 1) else {
                                    return Err((
                                        format!("pattern field `{p}`: a matcher has exactly one operator"),
                                        hint.into(),
                                    ));
                                };
                                if !PATTERN_OPERATORS.contains(&name.as_str()) {
                                    let ops = PATTERN_OPERATORS.join(", ");
                                    return Err((
                                        format!("pattern field `{p}`: unknown operator `{name}`"),
                                        format!("operators: {ops}"),
                                    ));
                                }
                            } else if item.is_array() {
                                return Err((format!("pattern field `{p}`: lists cannot nest"), hint.into()));
                            }
                        }
                    }
                    _ => {
                        return Err((
                            format!("pattern field `{p}` must be a list of values, e.g. [{child}]"),
                            hint.into(),
                        ));
                    }
                }
            }
            Ok(())
        }
        _ => Err((format!("pattern field `{path}` must be a mapping or a list"), hint.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(r: Result<(), Problem>) -> String {
        r.unwrap_err().0
    }

    #[test]
    fn rates_need_the_right_number_of_the_unit() {
        assert!(schedule("rate(1 minute)").is_ok());
        assert!(schedule("rate(5 minutes)").is_ok());
        assert!(schedule("rate(2 days)").is_ok());
        assert_eq!(msg(schedule("rate(1 minutes)")), "`rate(1 minutes)` must say `1 minute`");
        assert_eq!(msg(schedule("rate(5 hour)")), "`rate(5 hour)` must say `5 hours`");
        assert_eq!(msg(schedule("rate(0 minutes)")), "`rate(0 minutes)`: `0` is not a positive whole number");
        assert_eq!(msg(schedule("rate(5 seconds)")), "`rate(5 seconds)`: unknown unit `seconds`");
        assert_eq!(msg(schedule("rate(5)")), "`rate(5)` needs a number and a unit");
        assert_eq!(msg(schedule("every 5 minutes")), "`every 5 minutes` is not a schedule expression");
    }

    #[test]
    fn crons_have_six_fields_and_one_question_mark() {
        for ok in [
            "cron(0 8 * * ? *)",
            "cron(0/15 * ? * MON-FRI *)",
            "cron(0 0 L * ? *)",
            "cron(0 10 ? * 6#3 *)",
            "cron(30 2 1,15 JAN-JUN ? 2027)",
        ] {
            assert!(schedule(ok).is_ok(), "{ok}: {:?}", schedule(ok));
        }
        assert_eq!(msg(schedule("cron(0 8 * * *)")), "`cron(0 8 * * *)` has 5 fields, not 6");
        assert_eq!(
            msg(schedule("cron(0 8 * * * *)")),
            "`cron(0 8 * * * *)`: exactly one of day-of-month and day-of-week must be `?`"
        );
        assert_eq!(
            msg(schedule("cron(0 8 ? * ? *)")),
            "`cron(0 8 ? * ? *)`: exactly one of day-of-month and day-of-week must be `?`"
        );
        assert_eq!(msg(schedule("cron(61 8 * * ? *)")), "`cron(61 8 * * ? *)`: `61` is not a valid minutes field");
        assert_eq!(msg(schedule("cron(0 8 * FOO ? *)")), "`cron(0 8 * FOO ? *)`: `FOO` is not a valid month field");
        assert_eq!(msg(schedule("cron(0/0 8 * * ? *)")), "`cron(0/0 8 * * ? *)`: `0/0` is not a valid minutes field");
    }

    #[test]
    fn patterns_need_arrays_at_the_leaves() {
        assert!(
            pattern(&json!({ "source": ["orders.app"], "detail": { "total": [{ "numeric": [">", 100] }] } })).is_ok()
        );
        assert_eq!(msg(pattern(&json!({}))), "an event pattern must not be empty");
        assert_eq!(msg(pattern(&json!(["x"]))), "an event pattern must be a mapping");
        assert_eq!(
            msg(pattern(&json!({ "source": "orders.app" }))),
            "pattern field `source` must be a list of values, e.g. [\"orders.app\"]"
        );
        assert_eq!(
            msg(pattern(&json!({ "detail": { "id": [] } }))),
            "pattern field `detail.id` matches nothing (empty list)"
        );
        assert_eq!(
            msg(pattern(&json!({ "source": [{ "startswith": "x" }] }))),
            "pattern field `source`: unknown operator `startswith`"
        );
    }
}

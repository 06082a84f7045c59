//! Small helpers for the report's markdown tables, and the number formats it shares
//! with `cellnets list`.

/// A markdown table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut text = format!(
        "| {} |\n|{}\n",
        header.join(" | "),
        "---|".repeat(header.len())
    );
    for row in rows {
        text += &format!("| {} |\n", row.join(" | "));
    }
    text
}

/// A metric to four decimals; a dash when it is missing or undefined.
pub fn metric(value: Option<f64>) -> String {
    match value {
        Some(value) if value.is_finite() => format!("{value:.4}"),
        _ => "–".into(),
    }
}

pub fn rate(value: f64) -> String {
    format!("{:.1}%", value * 100.0)
}

/// An integer with thousands separators.
pub fn count(value: impl Into<i128>) -> String {
    let digits = value.into().to_string();
    let (sign, digits) = digits.split_at(usize::from(digits.starts_with('-')));
    let mut grouped = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    format!("{sign}{grouped}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(count(9670664u64), "9,670,664");
        assert_eq!(count(-1234i64), "-1,234");
        assert_eq!(count(12u64), "12");
        assert_eq!(count(616i64), "616");
        assert_eq!(count(0i64), "0");
        assert_eq!(metric(Some(f64::NAN)), "–");
        assert_eq!(metric(Some(0.87054)), "0.8705");
        assert_eq!(
            table(&["a", "b"], &[vec!["1".into(), "2".into()]]),
            "| a | b |\n|---|---|\n| 1 | 2 |\n"
        );
    }
}

//! Small helpers for the report's markdown: tables, text from the user quoted so that it
//! stays text, and the number formats it shares with `cellnets list`.

use crate::statistics::Interval;

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

/// Text from the user (a path, a class folder's name) as markdown that shows exactly
/// that text: each character that could open a link, an image, HTML, an entity,
/// emphasis, code or a table cell is backslash-escaped (CommonMark lets any ASCII
/// punctuation be), and line breaks become spaces.
pub fn text(raw: &str) -> String {
    let mut escaped = String::with_capacity(raw.len());
    for character in raw.chars() {
        match character {
            '\n' | '\r' => escaped.push(' '),
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '!' | '|' | '&' | '~' | '#' => {
                escaped.push('\\');
                escaped.push(character);
            }
            other => escaped.push(other),
        }
    }
    escaped
}

/// Text from the user as an inline code span, shown verbatim: fenced by one backtick
/// more than its longest run of them. A `|` is escaped, which a table cell needs (GFM
/// splits cells before it reads code spans) and plain text shows as `\|`.
pub fn code(raw: &str) -> String {
    let flat = raw.replace(['\n', '\r'], " ").replace('|', "\\|");
    let longest = flat.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = match flat.starts_with('`') || flat.ends_with('`') {
        true => " ",
        false => "",
    };
    format!("{fence}{pad}{flat}{pad}{fence}")
}

/// A metric to four decimals; a dash when it is missing or undefined.
pub fn metric(value: Option<f64>) -> String {
    match value {
        Some(value) if value.is_finite() => format!("{value:.4}"),
        _ => "–".into(),
    }
}

/// A metric with its 95% interval, `0.9073 [0.8975, 0.9167]`; the metric alone when
/// the interval is undefined.
pub fn with_interval(value: f64, interval: Interval) -> String {
    if interval.is_defined() {
        format!(
            "{} [{}, {}]",
            metric(Some(value)),
            metric(Some(interval.low)),
            metric(Some(interval.high))
        )
    } else {
        metric(Some(value))
    }
}

/// A reference number (the study's), taken as exact, and whether ours is consistent
/// with it: whether it lies in our 95% interval.
pub fn against_interval(reference: Option<f64>, interval: Interval) -> String {
    match reference {
        Some(value) if value.is_finite() && interval.is_defined() => {
            let verdict = if interval.contains(value) {
                "consistent: inside"
            } else {
                "not consistent: outside"
            };
            format!("{} ({verdict} our 95% interval)", metric(Some(value)))
        }
        _ => metric(reference),
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
    fn user_text_stays_text() {
        let hostile =
            "![a](http://x/p.png) [b](javascript:alert(1)) <img src=x> &amp; *e* `c` a|b\nline";
        let html = |markdown: &str| crate::report::html::markdown_to_html(markdown, |_| None);
        let shown = html(&text(hostile));
        assert_eq!(
            shown,
            "<p>![a](http://x/p.png) [b](javascript:alert(1)) &lt;img src=x&gt; &amp;amp; *e* `c` a|b line</p>\n"
        );
        let cell = html(&table(
            &["name"],
            &[vec![text("a|b")], vec![code("a|b`c``")]],
        ));
        assert!(cell.contains("<td>a|b</td>"), "{cell}");
        assert!(cell.contains("<td><code>a|b`c``</code></td>"), "{cell}");
        assert_eq!(code("`x"), "`` `x ``");
        assert_eq!(
            html(&code("<b>[x](y)")),
            "<p><code>&lt;b&gt;[x](y)</code></p>\n"
        );
    }

    #[test]
    fn formats() {
        assert_eq!(count(9670664u64), "9,670,664");
        assert_eq!(count(-1234i64), "-1,234");
        assert_eq!(count(12u64), "12");
        assert_eq!(count(616i64), "616");
        assert_eq!(count(0i64), "0");
        assert_eq!(metric(Some(f64::NAN)), "–");
        assert_eq!(metric(Some(0.87054)), "0.8705");
        let interval = Interval {
            low: 0.89751,
            high: 0.91669,
        };
        assert_eq!(with_interval(0.90734, interval), "0.9073 [0.8975, 0.9167]");
        assert_eq!(with_interval(0.9, Interval::UNDEFINED), "0.9000");
        assert_eq!(
            against_interval(Some(0.9088), interval),
            "0.9088 (consistent: inside our 95% interval)"
        );
        assert_eq!(
            against_interval(Some(0.93), interval),
            "0.9300 (not consistent: outside our 95% interval)"
        );
        assert_eq!(against_interval(None, interval), "–");
        assert_eq!(
            table(&["a", "b"], &[vec!["1".into(), "2".into()]]),
            "| a | b |\n|---|---|\n| 1 | 2 |\n"
        );
    }
}

//! report.html: the report's markdown as HTML, every figure inline, and the page's
//! shell. It holds report.md's markdown as HTML with every figure inline (SVG charts as
//! markup, pictures as data: URLs), the study's snapshot as inline JSON, and the script
//! that draws interactive curves, tables and run pages from it. The page asks nothing
//! of any other file or host, so it opens from disk, from a mail or offline; its tables
//! and figures read without JavaScript. `cellnets serve` sends the same page, live:
//! without the markdown, fetching fresh snapshots instead.

use pulldown_cmark::{html, Event, Options, Parser, Tag, TagEnd};
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

static UPLOT_JS: &str = include_str!("../../assets/uplot/uPlot.iife.min.js");
static UPLOT_CSS: &str = include_str!("../../assets/uplot/uPlot.min.css");
static APP_JS: &str = include_str!("../../assets/report/app.js");
static APP_CSS: &str = include_str!("../../assets/report/app.css");

/// The page's two scripts, exactly as they sit between `<script>` and `</script>`.
fn scripts() -> [String; 2] {
    [format!("\n{UPLOT_JS}\n"), format!("\n{APP_JS}\n")]
}

/// The Content-Security-Policy of report.html and serve's page: only the page's own two
/// scripts run (allowed by their SHA-256, so a script that found its way into the
/// markdown does not); images only inline (`data:`) or from the page's own server;
/// fetches only to that server; no fonts, frames, plugins, forms or `<base>`. Styles may
/// be inline: the SVG figures carry style attributes, and without a way to load
/// anything a style can leak nothing. `frame-ancestors` is served as a header by
/// `serve` (browsers ignore it in a meta tag).
pub fn content_security_policy() -> &'static str {
    static POLICY: LazyLock<String> = LazyLock::new(|| {
        use base64::Engine;
        let hashes: Vec<String> = scripts()
            .iter()
            .map(|script| {
                let digest = Sha256::digest(script.as_bytes());
                let encoded = base64::engine::general_purpose::STANDARD.encode(digest);
                format!("'sha256-{encoded}'")
            })
            .collect();
        format!(
            "default-src 'none'; script-src {}; style-src 'unsafe-inline'; \
             img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'",
            hashes.join(" ")
        )
    });
    &POLICY
}

/// Where the page's data comes from.
pub enum Data<'a> {
    /// A snapshot, as JSON already escaped for a script element
    /// (`snapshot::to_script_json`).
    Inline(&'a str),
    /// Fetched from `api/study` beside the page, every few seconds.
    Live,
}

/// The whole page: `title`, the interactive part the script draws from `data`, then
/// `body` (HTML that reads without the script).
pub fn page(title: &str, body: &str, data: Data) -> String {
    let (mode, data) = match data {
        Data::Inline(json) => (
            "static",
            format!("<script type=\"application/json\" id=\"study-data\">{json}</script>\n"),
        ),
        Data::Live => ("live", String::new()),
    };
    let title = escape_text(title);
    let policy = escape_text(content_security_policy());
    let [uplot, app] = scripts();
    // The empty icon keeps a browser from asking for /favicon.ico, a request to nothing
    // from disk and a 404 from `serve`.
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{policy}\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<link rel=\"icon\" href=\"data:,\">\n<style>\n{UPLOT_CSS}\n{APP_CSS}\n</style>\n</head>\n<body>\n\
         <div id=\"app\" data-mode=\"{mode}\"></div>\n\
         <noscript><p class=\"note\">The interactive curves and tables need JavaScript; \
         the report below does not.</p></noscript>\n\
         <main id=\"report\">\n{body}</main>\n{data}\
         <script>{uplot}</script>\n<script>{app}</script>\n</body>\n</html>\n"
    )
}

/// `markdown` as HTML (CommonMark with tables; its raw HTML kept), each image whose
/// target `figure` knows replaced by the inline markup it returns. Anything the report
/// did not create itself is shown as text: other images (their alt text), links that
/// leave the report's folder (their text) and raw HTML other than its folding tags; so
/// a name or path quoted in the markdown cannot load, link or run anything.
pub fn markdown_to_html(markdown: &str, figure: impl Fn(&str) -> Option<String>) -> String {
    let mut events = Vec::new();
    let (mut inside_replaced_image, mut image_dropped, mut link_dropped) = (false, false, false);
    for event in Parser::new_ext(markdown, Options::ENABLE_TABLES) {
        match event {
            Event::Start(Tag::Image { ref dest_url, .. }) => match figure(dest_url) {
                Some(inline) => {
                    events.push(Event::Html(
                        format!("<figure class=\"figure\">{inline}</figure>").into(),
                    ));
                    inside_replaced_image = true;
                }
                None => image_dropped = true,
            },
            Event::End(TagEnd::Image) if inside_replaced_image => inside_replaced_image = false,
            Event::End(TagEnd::Image) if image_dropped => image_dropped = false,
            // The alt text of a replaced image: the figure has its own title.
            _ if inside_replaced_image => {}
            Event::Start(Tag::Link { ref dest_url, .. }) if !beside_the_report(dest_url) => {
                link_dropped = true
            }
            Event::End(TagEnd::Link) if link_dropped => link_dropped = false,
            Event::Html(raw) | Event::InlineHtml(raw) if !only_folding_tags(&raw) => {
                events.push(Event::Text(raw))
            }
            other => events.push(other),
        }
    }
    let mut out = String::new();
    html::push_html(&mut out, events.into_iter());
    out
}

/// Whether a link's target is a file or folder beside report.html, as the report's own
/// links are (`width/summary.csv`): no scheme, no host, no absolute path.
fn beside_the_report(target: &str) -> bool {
    !target.is_empty() && !target.contains([':', '\\']) && !target.starts_with('/')
}

/// Whether raw HTML in the markdown holds only the tags the report writes itself to
/// fold long parts away (`<details>`, `<summary>`). Any other raw HTML comes from a
/// name or path the report quotes (a manifest's path may hold `<script>`), and is shown
/// as text.
fn only_folding_tags(raw: &str) -> bool {
    const ALLOWED: [&str; 4] = ["<details>", "</details>", "<summary>", "</summary>"];
    let mut rest = raw;
    while let Some(start) = rest.find('<') {
        let tag = rest[start..]
            .find('>')
            .map(|end| &rest[start..=start + end]);
        match tag {
            Some(tag) if ALLOWED.contains(&tag) => rest = &rest[start + tag.len()..],
            _ => return false,
        }
    }
    true
}

/// An SVG file's markup, ready to sit in HTML: without its XML declaration.
pub fn inline_svg(svg: &str) -> String {
    let start = svg.find("<svg").unwrap_or(0);
    svg[start..].to_string()
}

/// A PNG file as an image element with a data: URL.
pub fn inline_png(png: &[u8], alt: &str) -> String {
    use base64::Engine;
    let data = base64::engine::general_purpose::STANDARD.encode(png);
    format!(
        "<img alt=\"{}\" src=\"data:image/png;base64,{data}\">",
        escape_text(alt)
    )
}

/// Text for HTML content or a quoted attribute.
pub fn escape_text(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_images_become_inline_figures_and_the_rest_of_the_markdown_html() {
        let markdown = "## Stage `a<b`\n\n| run | acc |\n|---|---|\n| **r** | 0.5 |\n\n\
                        ![grid](report/a/grid.png)\n\n![gone](report/a/gone.png)\n\n\
                        <details><summary>curves</summary>\n\n![c](report/a/c.png)\n\n</details>\n";
        let html = markdown_to_html(markdown, |target| {
            (target != "report/a/gone.png").then(|| format!("<svg data-from=\"{target}\"></svg>"))
        });
        assert!(
            html.contains("<h2>Stage <code>a&lt;b</code></h2>"),
            "{html}"
        );
        assert!(html.contains("<td><strong>r</strong></td>"), "{html}");
        assert!(html.contains(
            "<figure class=\"figure\"><svg data-from=\"report/a/grid.png\"></svg></figure>"
        ));
        assert!(
            !html.contains("<img") && html.contains("<p>gone</p>"),
            "an image the report cannot inline shows its alt text: {html}"
        );
        assert!(
            html.contains("<details><summary>curves</summary>"),
            "{html}"
        );
        assert!(html.contains("data-from=\"report/a/c.png\""), "{html}");
        assert!(
            !html.contains(">grid<"),
            "the alt text of a replaced image is dropped"
        );
    }

    #[test]
    fn raw_html_other_than_the_reports_folding_tags_is_shown_as_text() {
        let markdown = "# report: x</script><script>alert(1)</script><!--/m.yaml\n\n\
                        <img src=x onerror=alert(2)>\n\n\
                        <details><summary>curves</summary>\n\nbody\n\n</details>\n";
        let html = markdown_to_html(markdown, |_| None);
        assert!(
            !html.contains("<script>") && !html.contains("<img"),
            "{html}"
        );
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(
            html.contains("<details><summary>curves</summary>"),
            "{html}"
        );
        assert!(html.contains("</details>"), "{html}");
    }

    #[test]
    fn links_that_leave_the_reports_folder_and_foreign_images_become_text() {
        let markdown = "[ours](width/summary.csv) [out](https://example.org/x) \
                        [js](javascript:alert(1)) [abs](/etc/passwd) [net](//example.org/x) \
                        <https://example.org/auto> ![pixel](https://example.org/p.png)\n";
        let html = markdown_to_html(markdown, |_| None);
        assert!(
            html.contains("<a href=\"width/summary.csv\">ours</a>"),
            "{html}"
        );
        assert_eq!(html.matches("<a ").count(), 1, "{html}");
        assert!(
            !html.contains("<img") && !html.contains("example.org/p.png\""),
            "{html}"
        );
        for text in [
            "out",
            "js",
            "abs",
            "net",
            "https://example.org/auto",
            "pixel",
        ] {
            assert!(html.contains(text), "{text} kept as text: {html}");
        }
    }

    #[test]
    fn the_policy_allows_exactly_the_pages_two_scripts() {
        let policy = content_security_policy();
        let page = page_without_data();
        assert!(page.contains(&format!(
            "<meta http-equiv=\"Content-Security-Policy\" content=\"{}\">",
            escape_text(policy)
        )));
        assert_eq!(policy.matches("'sha256-").count(), 2, "{policy}");
        // Recomputed from the page as a browser sees it.
        use base64::Engine;
        for script in page.split("<script>").skip(1) {
            let body = &script[..script.find("</script>").unwrap()];
            let digest = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body));
            assert!(policy.contains(&format!("'sha256-{digest}'")), "{digest}");
        }
        assert!(policy.starts_with("default-src 'none';") && !policy.contains("unsafe-eval"));
    }

    #[test]
    fn the_title_is_escaped_and_inline_data_sits_in_a_json_script() {
        let page = page("<b>&", "<p>body</p>", Data::Inline("{\"stages\":[]}"));
        assert!(page.contains("<title>&lt;b&gt;&amp;</title>"));
        assert!(page.contains(
            "<script type=\"application/json\" id=\"study-data\">{\"stages\":[]}</script>"
        ));
        assert!(page.contains("data-mode=\"static\""));
        let live = page_without_data();
        assert!(live.contains("data-mode=\"live\"") && !live.contains("study-data\">"));
    }

    fn page_without_data() -> String {
        page("t", "", Data::Live)
    }

    #[test]
    fn svg_loses_its_xml_declaration_and_png_becomes_a_data_url() {
        let svg = "<?xml version=\"1.0\"?>\n<svg width=\"2\"></svg>\n";
        assert_eq!(inline_svg(svg), "<svg width=\"2\"></svg>\n");
        assert_eq!(
            inline_png(b"abc", "a\"b"),
            "<img alt=\"a&quot;b\" src=\"data:image/png;base64,YWJj\">"
        );
    }
}

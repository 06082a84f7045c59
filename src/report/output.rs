//! What the report writes and where: the rendered markdown with the figures and CSV
//! tables it links, held as values until `write` puts them on disk. Rendering builds
//! these without touching the file system, so it can be tested on its own.

use super::html;
use crate::figures::{
    self, BestSoFar, CategoryLines, Curves, GroupedBars, HeatMap, MistakePanel, Montage, Proposals,
    RungCurves, TimeCurves,
};
use crate::storage::files::{write_atomically, write_table};
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use crate::storage::out_dir::{REPORT_DIR, REPORT_HTML, REPORT_MD};
/// The manifest's stage order, for readers of the CSV files such as the notebook.
pub const STAGES_CSV: &str = "stages.csv";

/// A figure before it is drawn.
pub enum Drawing {
    Curves(Curves),
    CategoryLines(CategoryLines),
    HeatMap(HeatMap),
    GroupedBars(GroupedBars),
    /// Pictures only: a vector copy of pixels would add nothing.
    Montage(Montage),
    MistakePanel(MistakePanel),
    RungCurves(RungCurves),
    TimeCurves(TimeCurves),
    BestSoFar(BestSoFar),
    Proposals(Proposals),
}

impl Drawing {
    /// Charts are also written as SVG; pictures only as PNG.
    fn has_svg(&self) -> bool {
        !matches!(self, Drawing::Montage(_) | Drawing::MistakePanel(_))
    }
}

/// A figure to write as `folder/name.png` (and `.svg` for charts).
pub struct FigureFile {
    /// Relative to the output folder, and so also the link from report.md.
    pub folder: String,
    pub name: String,
    pub drawing: Drawing,
}

/// A CSV table to write at `path`, relative to the output folder.
pub struct TableFile {
    pub path: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// A piece of the report: its markdown and the files that markdown links.
#[derive(Default)]
pub struct Section {
    pub markdown: String,
    pub figures: Vec<FigureFile>,
    pub tables: Vec<TableFile>,
}

impl Section {
    pub fn text(markdown: impl Into<String>) -> Self {
        Section {
            markdown: markdown.into(),
            ..Section::default()
        }
    }

    /// Appends `other`'s markdown after this one's, and takes over its files.
    pub fn push(&mut self, other: Section) {
        self.markdown += &other.markdown;
        self.figures.extend(other.figures);
        self.tables.extend(other.tables);
    }

    pub fn figure(&mut self, folder: &str, name: &str, drawing: Drawing) {
        self.figures.push(FigureFile {
            folder: folder.to_string(),
            name: name.to_string(),
            drawing,
        });
    }
}

/// Writes the figures and tables, then `out/report.md` last, so a report.md never links
/// a file that is not there yet. Returns report.md's path.
pub fn write(out: &Path, report: &Section) -> Result<PathBuf> {
    for figure in &report.figures {
        let dir = create_folder(&out.join(&figure.folder))?;
        save(&figure.drawing, &dir, &figure.name)?;
    }
    for table in &report.tables {
        let path = out.join(&table.path);
        create_folder(path.parent().unwrap_or(out))?;
        write_table(&path, &table.header, &table.rows)?;
    }
    let path = out.join(REPORT_MD);
    write_atomically(&path, |tmp| Ok(std::fs::write(tmp, &report.markdown)?))?;
    Ok(path)
}

/// Writes `out/report.html`: the report's markdown as HTML with the figures `write` drew
/// read back inline, and `data` (a snapshot's script-safe JSON) for the interactive
/// part. Returns its path.
pub fn write_html(out: &Path, report: &Section, title: &str, data: &str) -> Result<PathBuf> {
    let mut inline = HashMap::new();
    for figure in &report.figures {
        let dir = out.join(&figure.folder);
        let markup = if figure.drawing.has_svg() {
            let path = dir.join(format!("{}.svg", figure.name));
            let svg = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            html::inline_svg(&svg)
        } else {
            let path = dir.join(format!("{}.png", figure.name));
            let png =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            html::inline_png(&png, &figure.name)
        };
        // report.md links each figure by its PNG, whichever form is inlined.
        inline.insert(format!("{}/{}.png", figure.folder, figure.name), markup);
    }
    let body = html::markdown_to_html(&report.markdown, |target| inline.get(target).cloned());
    let page = html::page(title, &body, html::Data::Inline(data));
    let path = out.join(REPORT_HTML);
    write_atomically(&path, |tmp| Ok(std::fs::write(tmp, page)?))?;
    Ok(path)
}

fn create_folder(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir.to_path_buf())
}

fn save(drawing: &Drawing, dir: &Path, name: &str) -> Result<PathBuf> {
    match drawing {
        Drawing::Curves(figure) => figures::save(figure, dir, name),
        Drawing::CategoryLines(figure) => figures::save(figure, dir, name),
        Drawing::HeatMap(figure) => figures::save(figure, dir, name),
        Drawing::GroupedBars(figure) => figures::save(figure, dir, name),
        Drawing::Montage(figure) => figures::save_png(figure, dir, name),
        Drawing::MistakePanel(figure) => figures::save_png(figure, dir, name),
        Drawing::RungCurves(figure) => figures::save(figure, dir, name),
        Drawing::TimeCurves(figure) => figures::save(figure, dir, name),
        Drawing::BestSoFar(figure) => figures::save(figure, dir, name),
        Drawing::Proposals(figure) => figures::save(figure, dir, name),
    }
}

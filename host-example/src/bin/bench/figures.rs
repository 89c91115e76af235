//! Issue 13's table: each figure as measured in this run, beside its goal, and whether the
//! goal is met. `bench` prints it as Markdown at the end of a run, and `--readme FILE`
//! writes it into the figures page (`docs/figures.md`) between two marker lines, so its table is the one
//! the last run made rather than a copy.

use anyhow::{Result, bail};

/// The line before the generated table in the figures page.
pub const BEGIN_MARKER: &str = "<!-- bench:figures begin (written by `bench --readme`) -->";
/// The line after it.
pub const END_MARKER: &str = "<!-- bench:figures end -->";

/// One row: what was measured, the value, the goal, and whether it was met (`None` for a
/// figure without a goal of its own, such as the loopback floor).
pub struct Row {
    /// What the row measures.
    pub figure: String,
    /// The value as measured, with its peer or native twin.
    pub measured: String,
    /// The goal, as the issue states it; empty for none.
    pub goal: String,
    /// Whether the goal was met.
    pub met: Option<bool>,
}

/// The rows of one run, in the order they were measured.
#[derive(Default)]
pub struct Figures {
    rows: Vec<Row>,
}

impl Figures {
    /// Adds a row.
    pub fn push(
        &mut self,
        figure: impl Into<String>,
        measured: impl Into<String>,
        goal: impl Into<String>,
        met: Option<bool>,
    ) {
        self.rows.push(Row {
            figure: figure.into(),
            measured: measured.into(),
            goal: goal.into(),
            met,
        });
    }

    /// Whether nothing was measured.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table in Markdown, with `caption` (the command and when) as the line above it.
    pub fn markdown(&self, caption: &str) -> String {
        let mut out =
            format!("{caption}\n\n| figure | measured | goal | met |\n| --- | --- | --- | --- |\n");
        for row in &self.rows {
            let met = match row.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "",
            };
            out.push_str(&format!(
                "| {} | {} | {} | {met} |\n",
                cell(&row.figure),
                cell(&row.measured),
                cell(&row.goal)
            ));
        }
        out
    }
}

/// A cell's text with the characters that would break a Markdown table row escaped.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// `readme` with the text between the marker lines replaced by `table`. Fails when the
/// markers are missing, out of order or repeated, so that a run never writes the table
/// somewhere unexpected.
pub fn splice(readme: &str, table: &str) -> Result<String> {
    let (Some(begin), Some(end)) = (readme.find(BEGIN_MARKER), readme.find(END_MARKER)) else {
        bail!("the file has no `{BEGIN_MARKER}` … `{END_MARKER}` lines to write the table between");
    };
    if readme.matches(BEGIN_MARKER).count() != 1 || readme.matches(END_MARKER).count() != 1 {
        bail!("the file has the table's marker lines more than once");
    }
    if end < begin {
        bail!("the file's end marker comes before its begin marker");
    }
    let after_begin = begin + BEGIN_MARKER.len();
    Ok(format!(
        "{}\n{}\n{}",
        &readme[..after_begin],
        table.trim_end(),
        &readme[end..]
    ))
}

/// `n` with thousands separators, as the figures page writes numbers.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures() -> Figures {
        let mut f = Figures::default();
        f.push("component size", "678,559 bytes", "≤ 409,600", Some(false));
        f.push("a | b", "x\ny", "", None);
        f.push("resync", "0.36 s", "≤ 2 s", Some(true));
        f
    }

    #[test]
    fn the_table_has_a_row_per_figure_with_its_verdict() {
        let md = figures().markdown("Measured by `bench`.");
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines[0], "Measured by `bench`.");
        assert_eq!(lines[2], "| figure | measured | goal | met |");
        assert_eq!(
            lines[4],
            "| component size | 678,559 bytes | ≤ 409,600 | **no** |"
        );
        assert_eq!(lines[5], "| a \\| b | x y |  |  |");
        assert_eq!(lines[6], "| resync | 0.36 s | ≤ 2 s | yes |");
        assert_eq!(lines.len(), 7);
    }

    #[test]
    fn the_table_goes_between_the_markers_and_nowhere_else() {
        let readme = format!("# t\n\nbefore\n{BEGIN_MARKER}\nold table\n{END_MARKER}\nafter\n");
        let once = splice(&readme, "NEW\n").unwrap();
        assert_eq!(
            once,
            format!("# t\n\nbefore\n{BEGIN_MARKER}\nNEW\n{END_MARKER}\nafter\n")
        );
        // Writing again replaces, rather than adds to, the last table.
        assert_eq!(splice(&once, "NEWER").unwrap().matches("NEW").count(), 1);

        assert!(splice("# no markers\n", "t").is_err());
        assert!(splice(&format!("{END_MARKER}\n{BEGIN_MARKER}\n"), "t").is_err());
        assert!(
            splice(
                &format!("{BEGIN_MARKER}\n{END_MARKER}\n{BEGIN_MARKER}\n"),
                "t"
            )
            .is_err()
        );
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(678_559), "678,559");
        assert_eq!(grouped(1_076_608), "1,076,608");
    }
}

//! Wrapping styled text to a width, as the screen draws it: at word boundaries, breaking a word
//! longer than a row between graphemes, counting a wide character as two columns. The
//! conversation draws exactly the rows this returns, so what is counted (to keep the newest
//! line in view) is what is drawn.

use ratatui::style::Style;
use ratatui::text::{Line, Span};
use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

/// Columns a tab takes on screen.
pub const TAB: &str = "    ";

/// One grapheme and its style.
struct Cell<'a> {
    text: &'a str,
    width: usize,
    style: Style,
    space: bool,
}

/// The rows `line` takes at `width` columns (at least one row, even for an empty line).
pub fn wrap(line: &Line<'_>, width: usize) -> Vec<Line<'static>> {
    let width = width.max(1);
    let cells: Vec<Cell<'_>> = line
        .spans
        .iter()
        .flat_map(|span| {
            let style = line.style.patch(span.style);
            span.content.graphemes(true).map(move |g| {
                let space = g.chars().all(char::is_whitespace);
                Cell { text: g, width: g.width(), style, space }
            })
        })
        .collect();
    let mut rows: Vec<Vec<&Cell<'_>>> = vec![Vec::new()];
    let mut used = 0;
    let mut i = 0;
    while i < cells.len() {
        if cells[i].space {
            // Spaces between words stay on the row they follow; at the start of a row that a
            // wrap began they go (at the line's own start they are its indentation).
            let first_row = rows.len() == 1;
            if (used > 0 || first_row) && used + cells[i].width <= width {
                rows.last_mut().expect("a row").push(&cells[i]);
                used += cells[i].width;
            } else if used > 0 {
                rows.push(Vec::new());
                used = 0;
            }
            i += 1;
            continue;
        }
        let end = (i..cells.len()).find(|&j| cells[j].space).unwrap_or(cells.len());
        let word: usize = cells[i..end].iter().map(|c| c.width).sum();
        if used > 0 && used + word > width {
            // The word does not fit after what is there: a new row, without trailing spaces.
            let row = rows.last_mut().expect("a row");
            while row.last().is_some_and(|c| c.space) {
                row.pop();
            }
            rows.push(Vec::new());
            used = 0;
        }
        for cell in &cells[i..end] {
            // A word longer than a row is broken between graphemes.
            if used > 0 && used + cell.width > width {
                rows.push(Vec::new());
                used = 0;
            }
            rows.last_mut().expect("a row").push(cell);
            used += cell.width;
        }
        i = end;
    }
    rows.into_iter().map(|row| merge(&row)).collect()
}

/// The rows of many lines.
pub fn wrap_all(lines: &[Line<'_>], width: usize) -> Vec<Line<'static>> {
    lines.iter().flat_map(|l| wrap(l, width)).collect()
}

/// A row's cells as spans, one per run of one style; spaces at its end go.
fn merge(row: &[&Cell<'_>]) -> Line<'static> {
    let end = row.iter().rposition(|c| !c.space).map_or(0, |i| i + 1);
    let mut spans: Vec<Span<'static>> = Vec::new();
    for cell in &row[..end] {
        match spans.last_mut() {
            Some(last) if last.style == cell.style => last.content.to_mut().push_str(cell.text),
            _ => spans.push(Span::styled(cell.text.to_owned(), cell.style)),
        }
    }
    Line::from(spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str, width: usize) -> Vec<String> {
        wrap(&Line::raw(text), width)
            .iter()
            .map(|l| l.spans.iter().map(|s| s.content.as_ref()).collect())
            .collect()
    }

    #[test]
    fn words_wrap_at_boundaries_and_long_ones_break() {
        assert_eq!(rows("the quick brown fox", 10), ["the quick", "brown fox"]);
        assert_eq!(rows("aaaa bbbb cccc", 9), ["aaaa bbbb", "cccc"]);
        assert_eq!(rows("abcdefghijkl", 5), ["abcde", "fghij", "kl"]);
        assert_eq!(rows("hi abcdefghijkl", 5), ["hi", "abcde", "fghij", "kl"]);
        assert_eq!(rows("", 5), [""]);
        assert_eq!(rows("   ", 5), [""]);
        assert_eq!(rows("a   b", 3), ["a", "b"]);
        assert_eq!(rows("  indented text", 10), ["  indented", "text"], "indentation stays");
    }

    #[test]
    fn wide_characters_and_emoji_count_double() {
        // Each CJK character is two columns wide.
        assert_eq!(rows("日本語テキスト", 6), ["日本語", "テキス", "ト"]);
        // An emoji with a skin tone is one grapheme, two columns: never split.
        assert_eq!(rows("👍🏽👍🏽👍🏽", 4), ["👍🏽👍🏽", "👍🏽"]);
        // Combining marks stay with their letter.
        assert_eq!(rows("e\u{301}e\u{301}e\u{301}", 2), ["e\u{301}e\u{301}", "e\u{301}"]);
        for (text, width) in [("日本語 テキスト 🥫🥫 mixed text", 7), ("ab 日本 cd", 3)]
        {
            for row in rows(text, width) {
                assert!(row.width() <= width, "{row:?} is wider than {width}");
            }
        }
    }

    /// Issue 16: the renderer used to wrap by words while the scroll was counted by
    /// characters, so each word-wrapped message hid one more line at the bottom. Counting here
    /// is drawing here.
    #[test]
    fn issue_16_three_long_words_take_the_rows_they_are_drawn_on() {
        let word = "x".repeat(48);
        let text = format!("[14:00] alice: {word} {word} {word}");
        // At 120×35 the conversation is 90 columns wide inside. 15 + 3 × 48 + 2 = 161 columns:
        // two rows by characters, as the old count had it, but three by words, as drawn.
        let drawn = rows(&text, 90);
        assert_eq!(drawn.len(), 3, "{drawn:?}");
        assert_eq!(161usize.div_ceil(90), 2, "what the old count said");
    }

    #[test]
    fn styles_survive_wrapping() {
        let bold = Style::new().add_modifier(ratatui::style::Modifier::BOLD);
        let line = Line::from(vec![Span::styled("bob: ", bold), Span::raw("hello there world")]);
        let wrapped = wrap(&line, 11);
        assert_eq!(wrapped[0].spans[0].style, bold);
        assert_eq!(wrapped[0].spans[0].content, "bob: ");
        assert_eq!(wrapped.len(), 2);
    }
}

//! The input: editing over several lines, pasting, and a history of what was sent.

/// Most lines kept in the history.
const HISTORY: usize = 200;
/// Most characters in the input. More than one message holds: a longer text is sent as
/// several messages, in order.
pub const MAX_INPUT: usize = 64 * 1024;

/// An editable line with history.
#[derive(Debug, Default)]
pub struct Input {
    text: Vec<char>,
    cursor: usize,
    history: Vec<String>,
    /// Position while browsing the history; `None` when editing a new line.
    browsing: Option<usize>,
    /// The line being edited before browsing started.
    draft: Vec<char>,
}

impl Input {
    /// The current text.
    pub fn text(&self) -> String {
        self.text.iter().collect()
    }

    /// Inserts a character at the cursor. Line feeds and tabs are text; other control
    /// characters are not.
    pub fn insert(&mut self, c: char) {
        if (c.is_control() && c != '\n' && c != '\t') || self.text.len() >= MAX_INPUT {
            return;
        }
        self.text.insert(self.cursor, c);
        self.cursor += 1;
    }

    /// Inserts pasted text at the cursor, as text: its line breaks stay line breaks, and
    /// nothing in it is a key (no Enter, no command).
    pub fn paste(&mut self, text: &str) {
        let text = text.replace("\r\n", "\n").replace('\r', "\n");
        for c in text.chars() {
            self.insert(c);
        }
    }

    /// The cursor's line and column (in characters).
    pub fn cursor_line(&self) -> (usize, usize) {
        let before = &self.text[..self.cursor];
        let line = before.iter().filter(|&&c| c == '\n').count();
        let col = before.iter().rev().take_while(|&&c| c != '\n').count();
        (line, col)
    }

    /// Moves the cursor to the same column of the line `delta` lines away, if there is one.
    fn move_line(&mut self, delta: isize) -> bool {
        let (line, col) = self.cursor_line();
        let lines: Vec<&[char]> = self.text.split(|&c| c == '\n').collect();
        let Some(target) = line.checked_add_signed(delta).filter(|&l| l < lines.len()) else {
            return false;
        };
        let start: usize = lines[..target].iter().map(|l| l.len() + 1).sum();
        self.cursor = start + col.min(lines[target].len());
        true
    }

    /// Deletes the character before the cursor.
    pub fn backspace(&mut self) {
        if self.cursor > 0 {
            self.cursor -= 1;
            self.text.remove(self.cursor);
        }
    }

    /// Deletes the character at the cursor.
    pub fn delete(&mut self) {
        if self.cursor < self.text.len() {
            self.text.remove(self.cursor);
        }
    }

    /// Moves the cursor.
    pub fn left(&mut self) {
        self.cursor = self.cursor.saturating_sub(1);
    }

    /// Moves the cursor.
    pub fn right(&mut self) {
        self.cursor = (self.cursor + 1).min(self.text.len());
    }

    /// To the start of the line.
    pub fn home(&mut self) {
        self.cursor = 0;
    }

    /// To the end of the line.
    pub fn end(&mut self) {
        self.cursor = self.text.len();
    }

    /// Deletes the whole line.
    pub fn clear(&mut self) {
        self.text.clear();
        self.cursor = 0;
        self.browsing = None;
    }

    /// Takes the line, remembering it in the history.
    pub fn take(&mut self) -> String {
        let line = self.text();
        if !line.trim().is_empty() && self.history.last() != Some(&line) {
            self.history.push(line.clone());
            if self.history.len() > HISTORY {
                self.history.remove(0);
            }
        }
        self.clear();
        line
    }

    /// The line above in a text of several lines; else the previous line of the history.
    pub fn up(&mut self) {
        if self.browsing.is_none() && self.move_line(-1) {
            return;
        }
        let at = match self.browsing {
            None if self.history.is_empty() => return,
            None => {
                self.draft = self.text.clone();
                self.history.len() - 1
            }
            Some(0) => 0,
            Some(i) => i - 1,
        };
        self.browsing = Some(at);
        self.set(self.history[at].chars().collect());
    }

    /// The line below in a text of several lines; else the next line of the history, then the
    /// draft.
    pub fn down(&mut self) {
        if self.browsing.is_none() && self.move_line(1) {
            return;
        }
        match self.browsing {
            None => {}
            Some(i) if i + 1 < self.history.len() => {
                self.browsing = Some(i + 1);
                self.set(self.history[i + 1].chars().collect());
            }
            Some(_) => {
                self.browsing = None;
                let draft = std::mem::take(&mut self.draft);
                self.set(draft);
            }
        }
    }

    fn set(&mut self, text: Vec<char>) {
        self.cursor = text.len();
        self.text = text;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(input: &mut Input, s: &str) {
        for c in s.chars() {
            input.insert(c);
        }
    }

    #[test]
    fn editing_and_history() {
        let mut input = Input::default();
        typed(&mut input, "hello");
        input.left();
        input.left();
        input.insert('X');
        assert_eq!(input.text(), "helXlo");
        input.backspace();
        input.delete();
        assert_eq!(input.text(), "helo");
        assert_eq!(input.take(), "helo");
        typed(&mut input, "second");
        input.take();
        typed(&mut input, "draft");
        input.up();
        assert_eq!(input.text(), "second");
        input.up();
        assert_eq!(input.text(), "helo");
        input.up();
        assert_eq!(input.text(), "helo");
        input.down();
        input.down();
        assert_eq!(input.text(), "draft");
        input.insert('\u{1b}');
        assert_eq!(input.text(), "draft", "control characters are not typed");
    }

    /// Issue 16: a paste is text, line breaks and tabs included; it presses no key.
    #[test]
    fn issue_16_a_paste_is_text() {
        let mut input = Input::default();
        input.paste("A\r\nB\n--DISCONNECT--\ncarol\tD\u{1b}[2J");
        assert_eq!(input.text(), "A\nB\n--DISCONNECT--\ncarol\tD[2J");
        assert_eq!(input.cursor_line(), (3, 10));
        input.up();
        assert_eq!(input.cursor_line(), (2, 10), "up moves within the text");
        input.down();
        input.down();
        assert_eq!(input.cursor_line(), (3, 10), "no line below: the history is empty");
    }

    #[test]
    fn long_input_is_kept_beyond_one_message() {
        let mut input = Input::default();
        input.paste(&"x".repeat(10_000));
        assert_eq!(input.text().len(), 10_000, "not cut at 4,096");
        input.paste(&"y".repeat(MAX_INPUT));
        assert_eq!(input.text().chars().count(), MAX_INPUT, "bounded");
    }
}

//! The input line: editing, and a history of what was sent.

/// Most lines kept in the history.
const HISTORY: usize = 200;

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

    /// The cursor position, in characters.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Inserts a character at the cursor.
    pub fn insert(&mut self, c: char) {
        if c.is_control() || self.text.len() >= tincan_wire::MAX_TEXT_LEN {
            return;
        }
        self.text.insert(self.cursor, c);
        self.cursor += 1;
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

    /// The previous line of the history.
    pub fn up(&mut self) {
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

    /// The next line of the history, then the draft.
    pub fn down(&mut self) {
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
}

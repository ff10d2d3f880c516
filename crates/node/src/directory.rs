//! Where peers are found, behind one type: today the configured phonebooks, asked in order
//! (`specs/delivery.md` §3). `Node::resolve`, the delivery engine's lookups and the check of a
//! message request's claimed name all ask the directory and nothing else, so that other sources
//! (the LAN, a DHT) join here rather than at every caller.

use tincan_phonebook_client::{Client as Phonebook, Found};
use tincan_wire::Username;

/// The sources of addresses and names, in the order they are asked.
#[derive(Clone, Debug, Default)]
pub struct Directory {
    phonebooks: Vec<Phonebook>,
}

/// Why the directory could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// No source is configured.
    #[error("no phonebook is configured")]
    Empty,
    /// No source answered; the last one's reason.
    #[error(transparent)]
    Unreachable(tincan_phonebook_client::ClientError),
}

impl Directory {
    /// A directory over `phonebooks`, asked in this order.
    pub fn new(phonebooks: Vec<Phonebook>) -> Directory {
        Directory { phonebooks }
    }

    /// Whether there is nothing to ask.
    pub fn is_empty(&self) -> bool {
        self.phonebooks.is_empty()
    }

    /// The phonebooks, for what is done at each of them (publishing, the relay).
    pub fn phonebooks(&self) -> &[Phonebook] {
        &self.phonebooks
    }

    /// Who holds `name`, with its verified record: the first source that knows it answers;
    /// `Ok(None)` when every source that answered knows nobody by that name.
    pub async fn lookup(&self, name: &Username) -> Result<Option<Found>, DirectoryError> {
        let mut answered = false;
        let mut last_error = None;
        for phonebook in &self.phonebooks {
            match phonebook.lookup(name).await {
                Ok(Some(found)) => return Ok(Some(found)),
                Ok(None) => answered = true,
                Err(e) => last_error = Some(e),
            }
        }
        match (answered, last_error) {
            (true, _) => Ok(None),
            (false, Some(e)) => Err(DirectoryError::Unreachable(e)),
            (false, None) => Err(DirectoryError::Empty),
        }
    }

    /// Up to `limit` (1 to 100) users online, from the first source that answers.
    pub async fn online(&self, limit: usize) -> Result<Vec<Found>, DirectoryError> {
        let mut last_error = DirectoryError::Empty;
        for phonebook in &self.phonebooks {
            match phonebook.online(None, limit.clamp(1, 100)).await {
                Ok((found, _)) => return Ok(found),
                Err(e) => last_error = DirectoryError::Unreachable(e),
            }
        }
        Err(last_error)
    }
}

//! Reading documents on every core: many files side by side, and one large
//! file cut into pieces, while the caller places what they give in file and
//! document order, as if read one after the other.
//!
//! A file is cut only just before a line that starts with `---` and a blank
//! (or the end), and never at its first such line. Why a piece then reads as
//! the same documents, and the pieces together as the whole file, in
//! libyaml's terms (the scanner `serde_yaml_ng` runs):
//! - After a `\n` the column is 0, and at column 0 `---` and a blank is
//!   always a document start or an error: a plain scalar ends there, a block
//!   scalar too (its lines are indented by one at least), a quoted scalar
//!   fails ("found unexpected document indicator"), and a flow collection
//!   fails for want of its closing bracket.
//! - The scanner does the same at a document start as at the end of the
//!   input (unroll the indentation, drop the simple key, failing if one was
//!   required) and the parser ends the current document on either. So a
//!   piece that reads without error gave the documents the whole file gives
//!   up to that line, and leaves the parser where a fresh one starts: tag
//!   directives are cleared at each document's end, and anchors are per
//!   document (`serde_yaml_ng::loader`).
//! - Each piece holds a `---` line, so each has a document, and the stream of
//!   no documents, which `serde_yaml_ng` gives as one empty document, never
//!   arises: document numbers add up.
//!
//! Error messages carry positions (and the failed document's number), which a
//! piece counts from its own start. So when reading a piece fails, the file is
//! read one document after the other from that piece's first document on, as
//! it always was, and gives every message it always gave.

use super::direct;
use crate::Source;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How to share out the reading.
pub struct Split {
    pub threads: usize,
    /// Pieces of a file are this long at least; a file under twice this is
    /// read whole.
    pub piece: usize,
}

impl Split {
    pub fn auto() -> Self {
        Split {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            // Enough pieces at 10,000 Services (15 MB) for a busy core to
            // leave its share to the other, few enough to cost nothing.
            piece: 256 * 1024,
        }
    }
}

/// What reading gives the caller, for one source at a time, in order.
// As `direct::Read`: each lives a moment, on its way into a list.
#[allow(clippy::large_enum_variant)]
pub enum Event {
    Doc(direct::Read),
    /// Reading failed: read the file one document after the other from this
    /// document (counted from 0) on. Nothing more of this file follows.
    Rest {
        skip: usize,
    },
}

/// A piece of a source.
struct Unit {
    source: usize,
    start: usize,
    end: usize,
}

/// A piece's documents, with the empty ones counted, not kept.
struct Piece {
    reads: Vec<direct::Read>,
    docs: usize,
}

/// Calls `f` with every source's documents, in the order of the sources and
/// of the documents in each.
pub fn each<'s>(sources: &'s [Source], split: &Split, mut f: impl FnMut(&'s Source, Event)) {
    let units: Vec<Unit> = sources
        .iter()
        .enumerate()
        .flat_map(|(i, src)| {
            cuts(&src.content, split.piece).map(move |(start, end)| Unit {
                source: i,
                start,
                end,
            })
        })
        .collect();
    let mut order = InOrder::default();
    let read_unit = |unit: &Unit| read(&sources[unit.source].content[unit.start..unit.end]);
    let threads = split.threads.min(units.len());
    if threads <= 1 {
        for unit in &units {
            order.deliver(sources, unit, read_unit(unit), &mut f);
        }
        return;
    }
    let next = &AtomicUsize::new(0);
    let take = || {
        let i = next.fetch_add(1, Ordering::Relaxed);
        Some((i, units.get(i)?))
    };
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        // This thread reads too, as one of `threads` (no third thread on two
        // cores), and what it reads needs no copy (see `Piece::rehome`).
        for _ in 1..threads {
            let tx = tx.clone();
            s.spawn(move || {
                while let Some((i, unit)) = take() {
                    if tx.send((i, read_unit(unit))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        // Pieces finish out of order; each waits until those before it have
        // been handed on.
        let mut done = BTreeMap::new();
        let mut due = 0;
        loop {
            while let Some(piece) = done.remove(&due) {
                order.deliver(sources, &units[due], piece, &mut f);
                due += 1;
            }
            if due == units.len() {
                break;
            }
            match take() {
                Some((i, unit)) => {
                    done.insert(i, read_unit(unit));
                    done.extend(rx.try_iter().map(|(i, p)| (i, p.map(Piece::rehome))));
                }
                None => match rx.recv() {
                    Ok((i, piece)) => {
                        done.insert(i, piece.map(Piece::rehome));
                    }
                    // A reader panicked; the scope passes its panic on.
                    Err(_) => break,
                },
            }
        }
    });
}

/// Where handing on has got to in the current source.
#[derive(Default)]
struct InOrder {
    source: Option<usize>,
    docs: usize,
    /// The rest of the source was read one document after the other.
    rest: bool,
}

impl InOrder {
    fn deliver<'s>(
        &mut self,
        sources: &'s [Source],
        unit: &Unit,
        piece: Option<Piece>,
        f: &mut impl FnMut(&'s Source, Event),
    ) {
        if self.source != Some(unit.source) {
            *self = InOrder {
                source: Some(unit.source),
                ..InOrder::default()
            };
        }
        if self.rest {
            return;
        }
        let src = &sources[unit.source];
        match piece {
            Some(piece) => {
                for read in piece.reads {
                    f(src, Event::Doc(read));
                }
                self.docs += piece.docs;
            }
            None => {
                f(src, Event::Rest { skip: self.docs });
                self.rest = true;
            }
        }
    }
}

impl Piece {
    /// The documents copied into memory this thread allocated, and the
    /// reader's freed, for it to read the next pieces into.
    ///
    /// glibc's malloc gives each thread an arena of its own, and memory freed
    /// into one is reused only by the thread it belongs to. Documents another
    /// thread read live through most of translation, which this thread runs:
    /// left where they were read, the memory they free is never reused, and
    /// at 10,000 Services the peak was about 10 MB higher. A copy costs
    /// less than a tenth of reading.
    fn rehome(self) -> Piece {
        Piece {
            reads: self.reads.clone(),
            docs: self.docs,
        }
    }
}

/// Reads one piece's documents; `None` at the first that fails.
fn read(text: &str) -> Option<Piece> {
    let mut piece = Piece {
        reads: Vec::new(),
        docs: 0,
    };
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        if let Some(read) = direct::read(doc).ok()? {
            piece.reads.push(read);
        }
        piece.docs += 1;
    }
    Some(piece)
}

/// The byte ranges a file is read in: each `piece` long at least, cut only
/// before a `---` line other than the first (see the module comment).
fn cuts(text: &str, piece: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
    // Each `\n---` followed by a blank or the end: the line after the `\n`.
    let starts = text
        .match_indices("\n---")
        .map(|(i, _)| i + 1)
        .filter(|&i| marker_ends_at(text, i + 3));
    // The first `---` line is where the first cut may not go: at the start of
    // the file it is not among `starts`, and anywhere else it is skipped.
    let skip = usize::from(!is_document_start(text));
    let mut last = 0;
    let mut cuts: Vec<usize> = Vec::new();
    for at in starts.skip(skip) {
        if at - last >= piece && text.len() - at >= piece {
            cuts.push(at);
            last = at;
        }
    }
    cuts.push(text.len());
    let mut start = 0;
    cuts.into_iter().map(move |end| {
        let range = (start, end);
        start = end;
        range
    })
}

/// Whether `text` starts with a `---` line.
fn is_document_start(text: &str) -> bool {
    text.starts_with("---") && marker_ends_at(text, 3)
}

/// Whether a `---` ends at byte `i`: a blank or the end follows it.
fn marker_ends_at(text: &str, i: usize) -> bool {
    matches!(
        text.as_bytes().get(i),
        None | Some(b' ' | b'\t' | b'\r' | b'\n')
    )
}

#[cfg(test)]
mod tests;

//! Corrupt, truncated and hostile input: mutations of a real RDB must give errors or items,
//! never a panic, a hang or a huge allocation. Bounded (256 cases) so it runs in `cargo test`.

use ferry::rdb::{Item, Parser};
use proptest::prelude::*;
use proptest::sample::Index;

use crate::{alloc_probe, corpus_file};

/// A mutation of the file.
#[derive(Debug, Clone)]
enum Mutation {
    Set(Index, u8),
    Insert(Index, Vec<u8>),
    Remove(Index, usize),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        1 => (any::<Index>(), proptest::collection::vec(
            prop_oneof![Just(0xFFu8), Just(0x81), Just(0xC3), Just(0x80), any::<u8>()], 1..10))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<Index>(), 1usize..16).prop_map(|(i, n)| Mutation::Remove(i, n)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn apply(file: &mut Vec<u8>, m: &Mutation) {
    // An earlier truncation may have emptied the file: `Index::index(0)` would panic.
    if file.is_empty() {
        return;
    }
    match m {
        Mutation::Set(i, b) => {
            let at = i.index(file.len());
            file[at] = *b;
        }
        Mutation::Insert(i, bytes) => {
            let at = i.index(file.len());
            file.splice(at..at, bytes.iter().copied());
        }
        Mutation::Remove(i, n) => {
            let at = i.index(file.len());
            let end = (at + n).min(file.len());
            file.drain(at..end);
        }
        Mutation::Truncate(i) => {
            let at = i.index(file.len());
            file.truncate(at);
        }
    }
}

/// Parses and decodes everything it can; the result does not matter, only that it returns.
fn parse_and_decode(file: &[u8], chunk: usize) {
    let mut parser = Parser::new();
    for piece in file.chunks(chunk) {
        parser.push(piece);
        loop {
            match parser.next_item() {
                Ok(Some(Item::Entry(e))) => {
                    let _ = e.decode();
                    let _ = e.module_name();
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    let _ = parser.finish();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_real_rdbs_never_panic_or_allocate_hugely(
        mutations in proptest::collection::vec(mutation(), 1..6),
        chunk in 1usize..70_000,
        source in 0usize..3,
    ) {
        // real 7.2 and 6.2 files, and the hand-built RDB 6 with the retired encodings
        let mut file = match source {
            0 => corpus_file("7.2", false),
            1 => corpus_file("6.2", false),
            _ => crate::fixtures::rdb6(2_000_000_000).0,
        };
        // without the checksum the parser would stop at the mismatch before decoding: zero it
        // half the time so corrupt values reach the decoders
        let n = file.len();
        if chunk % 2 == 0 {
            file[n - 8..].copy_from_slice(&[0; 8]);
        }
        for m in &mutations {
            apply(&mut file, m);
        }
        parse_and_decode(&file, chunk);
        prop_assert!(
            alloc_probe::largest() < 64 << 20,
            "an allocation of {} bytes happened", alloc_probe::largest()
        );
    }
}

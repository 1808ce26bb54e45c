use super::command::{Refusal, Shaped};
use super::*;

fn filter(include: &[&str], exclude: &[&str]) -> KeyFilter {
    KeyFilter {
        include: include.iter().map(|s| s.to_string()).collect(),
        exclude: exclude.iter().map(|s| s.to_string()).collect(),
        ..KeyFilter::default()
    }
}

fn rename(pairs: &[(&str, &str)]) -> Vec<Rename> {
    pairs
        .iter()
        .map(|(f, t)| Rename {
            from_prefix: f.to_string(),
            to_prefix: t.to_string(),
        })
        .collect()
}

fn args(words: &str) -> Vec<Bytes> {
    words
        .split(' ')
        .map(|w| Bytes::from(w.to_string()))
        .collect()
}

fn shape(f: KeyFilter, map: &[(u32, u32)], r: &[(&str, &str)]) -> Shape {
    Shape::new(&f, &map.iter().copied().collect(), &rename(r), false, true).unwrap()
}

#[test]
fn the_default_shape_is_the_identity() {
    let s = Shape::new(&KeyFilter::default(), &DbMap::new(), &[], false, true).unwrap();
    assert!(s.is_identity());
    assert!(s.key_in(7, b"anything"));
    assert_eq!(s.command(0, &args("FLUSHALL")), Ok(Shaped::Send(None)));
    assert_eq!(
        s.command(0, &args("JSON.SET k $ 1")),
        Ok(Shaped::Send(None))
    );
}

#[test]
fn a_key_is_in_by_db_include_and_exclude_and_renamed_by_the_first_prefix() {
    let mut f = filter(&["user:*", "order:*"], &["user:tmp:*"]);
    f.dbs = vec![0, 3];
    let s = shape(f, &[(3, 5)], &[("user:admin:", "staff:"), ("user:", "u:")]);
    assert!(s.key_in(0, b"user:1"));
    assert!(s.key_in(3, b"order:9"));
    assert!(!s.key_in(1, b"user:1"), "db 1 is not in the filter");
    assert!(!s.key_in(0, b"user:tmp:1"), "excluded");
    assert!(!s.key_in(0, b"cart:1"), "not included");
    assert_eq!(s.target_db(3), 5);
    assert_eq!(s.target_db(0), 0);
    assert_eq!(s.target_key(&Bytes::from("user:admin:1")), "staff:1");
    assert_eq!(s.target_key(&Bytes::from("user:1")), "u:1");
    assert_eq!(s.target_key(&Bytes::from("order:1")), "order:1");
}

#[test]
fn types_are_redis_type_names_and_snapshot_only() {
    let mut f = KeyFilter {
        types: vec!["hash".into(), "ReJSON-RL".into()],
        ..KeyFilter::default()
    };
    let s = Shape::new(&f, &DbMap::new(), &[], false, false).unwrap();
    assert!(s.type_in("hash") && s.type_in("ReJSON-RL") && !s.type_in("string"));
    let live = Shape::new(&f, &DbMap::new(), &[], false, true).unwrap_err();
    assert_eq!(live.field, "options.filter.types");
    f.types.push("strings".into());
    let err = Shape::new(&f, &DbMap::new(), &[], false, false).unwrap_err();
    assert_eq!(err.field, "options.filter.types[2]");
    assert!(err.detail.contains("`strings`"), "{}", err.detail);
}

#[test]
fn bad_globs_shadowed_renames_and_implicit_merges_are_refused_by_field() {
    let err = Shape::new(&filter(&["a[b"], &[]), &DbMap::new(), &[], false, false).unwrap_err();
    assert_eq!(err.field, "options.filter.include[0]");
    let err = Shape::new(&filter(&[], &["x\\"]), &DbMap::new(), &[], false, false).unwrap_err();
    assert_eq!(err.field, "options.filter.exclude[0]");

    let shadowed = rename(&[("user:", "u:"), ("user:admin:", "staff:")]);
    let err = Shape::new(
        &KeyFilter::default(),
        &DbMap::new(),
        &shadowed,
        false,
        false,
    )
    .unwrap_err();
    assert_eq!(err.field, "options.rename[1].from_prefix");

    // 3 → 0 while db 0 keeps its number: a merge nobody asked for.
    let map: DbMap = [(3, 0)].into_iter().collect();
    let err = Shape::new(&KeyFilter::default(), &map, &[], false, false).unwrap_err();
    assert_eq!(err.field, "options.db_map.3");
    // Asked for: both mapped, or db 0 left out.
    let both: DbMap = [(3, 0), (0, 0)].into_iter().collect();
    assert!(Shape::new(&KeyFilter::default(), &both, &[], false, false).is_ok());
    let only3 = KeyFilter {
        dbs: vec![3],
        ..KeyFilter::default()
    };
    assert!(Shape::new(&only3, &map, &[], false, false).is_ok());
    let outside: DbMap = [(4, 9)].into_iter().collect();
    let err = Shape::new(&only3, &outside, &[], false, false).unwrap_err();
    assert_eq!(err.field, "options.db_map.4");
}

#[test]
fn stream_commands_are_sent_renamed_dropped_or_refused() {
    let s = shape(filter(&["in:*"], &[]), &[], &[("in:", "moved:")]);
    assert_eq!(
        s.command(0, &args("SET in:1 v")),
        Ok(Shaped::Send(Some(args("SET moved:1 v"))))
    );
    assert_eq!(s.command(0, &args("SET out:1 v")), Ok(Shaped::Drop));
    assert_eq!(
        s.command(0, &args("MSET in:1 a in:2 b")),
        Ok(Shaped::Send(Some(args("MSET moved:1 a moved:2 b"))))
    );
    assert_eq!(s.command(0, &args("DEL out:1 out:2")), Ok(Shaped::Drop));
    let mixed = s.command(0, &args("MSET in:1 a out:1 b")).unwrap_err();
    let text = mixed.to_string();
    assert!(
        text.starts_with("MSET touches keys on both sides"),
        "{text}"
    );
    assert!(
        text.contains("`in:1` (db 0) in, `out:1` (db 0) out"),
        "{text}"
    );
    assert!(matches!(
        s.command(0, &args("RENAME in:x out:x")),
        Err(Refusal::Mixed { .. })
    ));
    assert_eq!(
        s.command(0, &args("EVAL body 2 in:a in:b 7")),
        Ok(Shaped::Send(Some(args("EVAL body 2 moved:a moved:b 7"))))
    );
    assert!(matches!(
        s.command(0, &args("EVALSHA sha 2 in:a out:b")),
        Err(Refusal::Mixed { .. })
    ));
    assert_eq!(
        s.command(0, &args("JSON.SET in:1 $ 1")),
        Err(Refusal::Unknown {
            command: "JSON.SET".into()
        })
    );
    assert_eq!(s.command(0, &args("PUBLISH ch m")), Ok(Shaped::Send(None)));
}

#[test]
fn flushes_and_moves_follow_the_databases() {
    let f = KeyFilter {
        dbs: vec![0, 2],
        ..KeyFilter::default()
    };
    let s = shape(f.clone(), &[(2, 4)], &[]);
    assert_eq!(
        s.command(0, &args("FLUSHDB")),
        Err(Refusal::Flush {
            command: "FLUSHDB".into()
        })
    );
    assert_eq!(s.command(1, &args("FLUSHDB")), Ok(Shaped::Drop));
    assert_eq!(s.command(0, &args("SWAPDB 0 2")), Err(Refusal::SwapDb));
    let pass = Shape::new(&f, &[(2, 4)].into_iter().collect(), &[], true, true).unwrap();
    assert_eq!(pass.command(0, &args("FLUSHALL")), Ok(Shaped::Send(None)));
    assert_eq!(
        s.command(0, &args("MOVE k 2")),
        Ok(Shaped::Send(Some(args("MOVE k 4"))))
    );
    assert!(matches!(
        s.command(0, &args("MOVE k 1")),
        Err(Refusal::Mixed { .. })
    ));
    assert_eq!(
        s.command(0, &args("COPY a b DB 2 REPLACE")),
        Ok(Shaped::Send(Some(args("COPY a b DB 4 REPLACE"))))
    );
    assert_eq!(s.command(1, &args("SET k v")), Ok(Shaped::Drop));
}

#[test]
fn only_images_of_keys_in_the_filter_count_as_possibly_written() {
    let mut f = filter(&["user:*"], &["user:tmp:*"]);
    f.dbs = vec![3];
    let s = shape(f, &[(3, 0)], &[("user:", "u:")]);
    let k = |s: &str| Bytes::from(s.to_string());
    assert!(s.may_have_written(0, &k("u:1")));
    assert!(
        !s.may_have_written(0, &k("user:1")),
        "would have been renamed"
    );
    assert!(
        !s.may_have_written(0, &k("u:tmp:1")),
        "its source is excluded"
    );
    assert!(
        !s.may_have_written(3, &k("u:1")),
        "db 3 is not where db 3 goes"
    );
    assert!(!s.may_have_written(0, &k("other")));
    let plain = shape(filter(&["a*"], &[]), &[], &[]);
    assert!(plain.may_have_written(5, &k("ab")));
    assert!(!plain.may_have_written(5, &k("b")));
}

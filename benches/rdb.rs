//! RDB throughput: parsing to entries (raw value bytes, CRC64 verified) and to decoded values,
//! DUMP payload building, the commands rewrite, and the CRC64 / LZF implementation choices.
//!
//! The dataset is generated once from a real Redis 7.2 server (RDB 11) and cached in the temp
//! dir: 200k keys, 60% strings, 12% hashes of 10 fields, 10% lists, 6% sets, 6% zsets and 2%
//! streams, 20% of keys with a TTL — the mix at a fifth of its 1M keys, because the full
//! file takes too long to generate per run on the 2-core machine (`FERRY_RDB_BENCH_KEYS=1000000`
//! generates and caches it). Throughput is per byte of file, so the figure carries over.

#[path = "../tests/common/redis.rs"]
mod redis_server;

use std::path::PathBuf;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ferry::rdb::commands::{value_to_commands, RewriteOptions};
use ferry::rdb::{crc64, lzf, Entry, Item, Parser};

/// Keys in the generated dataset; `FERRY_RDB_BENCH_KEYS=1000000` gives the full size.
fn keys() -> usize {
    std::env::var("FERRY_RDB_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}
const CHUNK: usize = 64 * 1024;

fn dataset() -> Vec<u8> {
    let keys = keys();
    let path: PathBuf = std::env::temp_dir().join(format!("ferry-rdb-bench-{keys}-v1.rdb"));
    if let Ok(file) = std::fs::read(&path) {
        return file;
    }
    let server = redis_server::RedisServer::start("7.2");
    let mut conn = server.conn();
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let words = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
    ];
    let mut pipe = redis::pipe();
    for i in 0..keys {
        let slot = i % 50;
        let key = format!(
            "{}:{i}",
            ["str", "hash", "list", "set", "zset", "stream"][match slot {
                0..=29 => 0,
                30..=35 => 1,
                36..=40 => 2,
                41..=43 => 3,
                44..=46 => 4,
                _ => 5,
            }]
        );
        match slot {
            0..=29 => {
                if i % 5 == 0 {
                    pipe.cmd("SET").arg(&key).arg(next() % 1_000_000).ignore();
                } else {
                    let len = 40 + (next() % 400) as usize;
                    let mut v = String::with_capacity(len);
                    while v.len() < len {
                        v.push_str(words[(next() % 8) as usize]);
                        v.push_str(&(next() % 1000).to_string());
                    }
                    pipe.cmd("SET").arg(&key).arg(v).ignore();
                }
            }
            30..=35 => {
                let c = pipe.cmd("HSET").arg(&key);
                for f in 0..10 {
                    c.arg(format!("field{f}")).arg(format!(
                        "{}-{}",
                        words[f % 8],
                        next() % 100_000
                    ));
                }
                c.ignore();
            }
            36..=40 => {
                let c = pipe.cmd("RPUSH").arg(&key);
                for _ in 0..12 {
                    c.arg(format!(
                        "{}{}",
                        words[(next() % 8) as usize],
                        next() % 10_000
                    ));
                }
                c.ignore();
            }
            41..=43 => {
                let c = pipe.cmd("SADD").arg(&key);
                for _ in 0..10 {
                    c.arg(format!("m{}", next() % 100_000));
                }
                c.ignore();
            }
            44..=46 => {
                let c = pipe.cmd("ZADD").arg(&key);
                for _ in 0..10 {
                    c.arg((next() % 10_000) as f64 / 7.0)
                        .arg(format!("m{}", next() % 100_000));
                }
                c.ignore();
            }
            _ => {
                for e in 0..10 {
                    pipe.cmd("XADD")
                        .arg(&key)
                        .arg("*")
                        .arg("sensor")
                        .arg(e)
                        .arg("reading")
                        .arg(next() % 1000)
                        .ignore();
                }
            }
        }
        if i % 5 == 1 {
            pipe.cmd("PEXPIRE").arg(&key).arg(86_400_000 + i).ignore();
        }
        if i % 500 == 499 {
            pipe.query::<()>(&mut conn)
                .expect("populate the bench dataset");
            pipe = redis::pipe();
        }
    }
    if keys % 500 != 0 {
        pipe.query::<()>(&mut conn)
            .expect("populate the bench dataset");
    }
    let _: () = redis::cmd("SAVE").query(&mut conn).expect("SAVE");
    let file = std::fs::read(server.dir().join("dump.rdb")).expect("read dump.rdb");
    let _ = std::fs::write(&path, &file);
    file
}

fn parse_entries(file: &[u8]) -> Vec<Entry> {
    let mut parser = Parser::new();
    let mut out = Vec::new();
    for chunk in file.chunks(CHUNK) {
        parser.push(chunk);
        while let Some(item) = parser.next_item().expect("valid dataset") {
            if let Item::Entry(e) = item {
                out.push(e);
            }
        }
    }
    parser.finish().expect("complete dataset");
    out
}

fn bench_parse(c: &mut Criterion) {
    let file = dataset();
    let mut group = c.benchmark_group("rdb");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(file.len() as u64));
    group.bench_function("parse_to_entries", |b| {
        b.iter(|| {
            let mut parser = Parser::new();
            let mut n = 0usize;
            for chunk in file.chunks(CHUNK) {
                parser.push(chunk);
                while let Some(item) = parser.next_item().expect("valid") {
                    if let Item::Entry(e) = item {
                        n += e.raw_value.len();
                    }
                }
            }
            parser.finish().expect("complete");
            black_box(n)
        })
    });
    group.bench_function("parse_to_values", |b| {
        b.iter(|| {
            let mut parser = Parser::new();
            let mut n = 0usize;
            for chunk in file.chunks(CHUNK) {
                parser.push(chunk);
                while let Some(item) = parser.next_item().expect("valid") {
                    if let Item::Entry(e) = item {
                        let v = e.decode().expect("decodes");
                        n += v.type_name().len();
                    }
                }
            }
            black_box(n)
        })
    });
    let entries = parse_entries(&file);
    group.bench_function("dump_payloads_with_crc", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for e in &entries {
                n += e.dump_payload(11).len();
            }
            black_box(n)
        })
    });
    let values: Vec<_> = entries
        .iter()
        .map(|e| e.decode().expect("decodes"))
        .collect();
    let opts = RewriteOptions::default();
    group.bench_function("values_to_commands", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for (e, v) in entries.iter().zip(&values) {
                n += value_to_commands(&e.key, v, e.expire_ms, &opts)
                    .expect("rewritable")
                    .len();
            }
            black_box(n)
        })
    });
    group.finish();
}

fn bench_crc(c: &mut Criterion) {
    let data: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut group = c.benchmark_group("crc64");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("crc_crate_slice16", |b| {
        b.iter(|| crc64::crate_update(0, black_box(&data)))
    });
    group.bench_function("own_slicing8", |b| {
        b.iter(|| crc64::slicing8::update(0, black_box(&data)))
    });
    group.bench_function("own_clmul", |b| {
        b.iter(|| crc64::clmul::update(0, black_box(&data)))
    });
    // the parser checksums record by record: typical record sizes matter as much as bulk speed
    let small = &data[..200];
    group.throughput(Throughput::Bytes(small.len() as u64));
    group.bench_function("crc_crate_slice16_200b", |b| {
        b.iter(|| crc64::crate_update(0, black_box(small)))
    });
    group.bench_function("own_slicing8_200b", |b| {
        b.iter(|| crc64::slicing8::update(0, black_box(small)))
    });
    group.bench_function("own_clmul_200b", |b| {
        b.iter(|| crc64::clmul::update(0, black_box(small)))
    });
    group.finish();
}

fn bench_lzf(c: &mut Criterion) {
    let text: Vec<u8> = (0..20_000)
        .flat_map(|i: u32| {
            format!(
                "user:{} visited /page/{} at {} ",
                i % 977,
                i % 131,
                1_700_000_000 + i
            )
            .into_bytes()
        })
        .take(1 << 20)
        .collect();
    let compressed = ::lzf::compress(&text).expect("compressible");
    let mut group = c.benchmark_group("lzf");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("lzf_crate", |b| {
        b.iter(|| lzf::via_crate(black_box(&compressed), text.len()).expect("valid"))
    });
    group.bench_function("own", |b| {
        b.iter(|| lzf::own(black_box(&compressed), text.len()).expect("valid"))
    });
    group.finish();
}

criterion_group!(benches, bench_crc, bench_lzf, bench_parse);
criterion_main!(benches);

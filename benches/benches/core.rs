//! Micro benches of the session layer's pure parts: id generation and parsing, value encoding
//! and decoding of the benchmark payload.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use session_benches::payload::{self, CartItem};
use session_core::{SessionId, Value};

fn ids(c: &mut Criterion) {
    let mut g = c.benchmark_group("id");
    g.bench_function("generate", |b| b.iter(SessionId::generate));
    let id = SessionId::generate().expect("os random");
    let text = id.as_str().to_string();
    g.bench_function("parse", |b| b.iter(|| SessionId::parse(black_box(&text))));
    g.finish();
}

fn values(c: &mut Criterion) {
    let mut g = c.benchmark_group("value");
    let (user_id, name, _roles, cart, _csrf) = payload::values(42);
    g.bench_function("encode_u64", |b| {
        b.iter(|| Value::encode(black_box(&user_id)))
    });
    g.bench_function("encode_string", |b| {
        b.iter(|| Value::encode(black_box(&name)))
    });
    g.bench_function("encode_cart", |b| {
        b.iter(|| Value::encode(black_box(&cart)))
    });
    let v_id = Value::encode(&user_id).expect("encode");
    let v_name = Value::encode(&name).expect("encode");
    let v_cart = Value::encode(&cart).expect("encode");
    g.bench_function("decode_u64", |b| {
        b.iter(|| black_box(&v_id).decode::<u64>())
    });
    g.bench_function("decode_string", |b| {
        b.iter(|| black_box(&v_name).decode::<String>())
    });
    g.bench_function("decode_cart", |b| {
        b.iter(|| black_box(&v_cart).decode::<Vec<CartItem>>())
    });
    g.bench_function("encode_session_5_keys", |b| {
        b.iter(|| payload::data(black_box(7)))
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = ids, values
}
criterion_main!(benches);

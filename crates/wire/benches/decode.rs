//! Decode throughput of chat requests and responses, in bytes of payload per second.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tincan_wire::*;

fn message(seq: u64, text_len: usize) -> ChatMessage {
    ChatMessage {
        id: MessageId([seq as u8; 16]),
        seq: Seq::new(seq).expect("seq starts at 1"),
        sent_at: UnixMillis(1_764_000_000_000 + seq),
        from: Username::new("alice").expect("valid name"),
        to: PeerIdBytes::new(&[0x00, 0x24, 0x08, 0x01, 0x12, 0x20, 0x5a, 0x5a])
            .expect("valid peer id"),
        text: Text::new(&"x".repeat(text_len)).expect("valid text"),
    }
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for (name, count, text_len) in
        [("1x200B", 1, 200), ("64x200B", 64, 200), ("64x4096B", 64, MAX_TEXT_LEN)]
    {
        let batch = Batch::new((1..=count).map(|i| message(i, text_len)).collect())
            .expect("batch within limits");
        let bytes = Request::Chat(batch).encode();
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(format!("request/{name}"), |b| {
            b.iter(|| Request::decode(std::hint::black_box(&bytes)).expect("decodes"))
        });
    }
    let acks = Response::Acks(
        (0..64u8).map(|i| Ack { id: MessageId([i; 16]), outcome: Outcome::Stored }).collect(),
    );
    let bytes = acks.encode();
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("response/64acks", |b| {
        b.iter(|| Response::decode(std::hint::black_box(&bytes)).expect("decodes"))
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);

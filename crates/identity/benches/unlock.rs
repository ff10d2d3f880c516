//! How long unlocking a key file takes with the recommended argon2id parameters, next to the
//! OWASP-minimum parameters as a baseline. Creating a file costs one more derivation.

use criterion::{Criterion, criterion_group, criterion_main};
use tincan_identity::{KdfParams, Password, create_with, unlock};

fn unlock_time(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut group = c.benchmark_group("unlock");
    group.sample_size(10);
    let owasp = KdfParams::new(19 * 1024, 2, 1).expect("OWASP minimum is accepted");
    for (name, params) in
        [("owasp-minimum-19MiB-t2-p1", owasp), ("recommended", KdfParams::RECOMMENDED)]
    {
        let path = dir.path().join(name);
        let password = Password::new("correct horse battery staple".into());
        create_with(&path, &password, params).expect("key file created");
        group.bench_function(name, |b| b.iter(|| unlock(&path, &password).expect("unlocks")));
    }
    group.finish();
}

criterion_group!(benches, unlock_time);
criterion_main!(benches);

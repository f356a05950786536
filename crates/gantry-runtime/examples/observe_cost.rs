//! What one API observation costs: `cargo run --release -p gantry-runtime --example observe_cost`.
//!
//! Times `ApiMetrics::observe` on one thread and on several at once (the request workers of a
//! busy server), over a few operations, and prints nanoseconds per call. A measurement, not a
//! test: nothing here asserts on time.

use gantry_runtime::Metrics;
use std::sync::Arc;
use std::time::{Duration, Instant};

const OPS: [&str; 4] = ["DescribeClusters", "RunTask", "DescribeTasks", "ListTasks"];
const N: usize = 2_000_000;

fn run(m: &Metrics, n: usize) {
    for i in 0..n {
        let op = OPS[i % OPS.len()];
        m.api.observe(
            "ecs",
            op,
            if i % 50 == 0 { 400 } else { 200 },
            Duration::from_micros((i % 900) as u64),
        );
    }
}

fn main() {
    let m = Arc::new(Metrics::new());
    run(&m, 10_000); // the handles are created and cached
    let t = Instant::now();
    run(&m, N);
    println!("1 thread: {:.0} ns per observe", t.elapsed().as_nanos() as f64 / N as f64);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let t = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || run(&m, N))
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    let per_call = t.elapsed().as_nanos() as f64 / N as f64;
    println!("{threads} threads at once: {per_call:.0} ns per observe per thread");
    let t = Instant::now();
    let text = m.render();
    println!("render: {:?} for {} bytes", t.elapsed(), text.len());
}

//! Embeds product titles from a TSV (second column) and prints the throughput.
//! `cargo run --release -p strata-model --example embed_titles -- MODEL_DIR TSV N`
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let model = std::path::Path::new(&args[1]);
    let text = std::fs::read_to_string(&args[2])?;
    let n: usize = args[3].parse()?;
    let titles: Vec<&str> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split('\t').nth(1))
        .take(n)
        .collect();
    let e = strata_model::Embedder::load(model, &Default::default())?;
    let t = std::time::Instant::now();
    let v = e.embed(&titles, strata_model::Side::Item)?;
    let s = t.elapsed().as_secs_f64();
    println!(
        "{} titles in {s:.2}s = {:.1}/s (checksum {:.4})",
        titles.len(),
        titles.len() as f64 / s,
        v.iter().sum::<f32>()
    );
    Ok(())
}

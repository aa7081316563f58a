//! Generates a marketplace of a given size and prints a sample and its statistics.
//! Usage: market_probe [ITEMS] [QUERIES] [quiet]
use strata_data::ItemTextConfig;
use strata_data::marketplace::{Marketplace, MarketplaceConfig};
use strata_data::stats::DataStats;

/// Prints how long each stage took.
struct StageTimer(std::sync::Mutex<Option<(String, std::time::Instant)>>);

impl strata_data::progress::Progress for StageTimer {
    fn stage(&self, name: &str, _total: u64) {
        *self.0.lock().unwrap() = Some((name.to_string(), std::time::Instant::now()));
    }
    fn advance(&self, _n: u64) {}
    fn finish(&self) {
        if let Some((n, t)) = self.0.lock().unwrap().take() {
            eprintln!("  {n}: {:?}", t.elapsed());
        }
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let items: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(3000);
    let queries: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(600);
    let quiet = args.next().is_some();
    let t = std::time::Instant::now();
    let m = Marketplace::generate_with(
        &MarketplaceConfig {
            items,
            queries,
            engagement: true,
            ..Default::default()
        },
        &StageTimer(std::sync::Mutex::new(None)),
    )?;
    eprintln!(
        "generated {} items, {} queries, {} judgments in {:?}",
        m.catalog.len(),
        m.queries.len(),
        m.judgments.len(),
        t.elapsed()
    );
    if quiet {
        return Ok(());
    }
    for it in m.catalog.items().iter().take(25) {
        println!(
            "{} | {} | {} | {:?}",
            it.id,
            it.name,
            it.taxonomy.join(" > "),
            it.attributes
        );
    }
    for q in m.queries.iter().take(40) {
        println!(
            "{:?} {:?} {} -> {}",
            q.kind,
            q.split,
            q.text,
            m.oracle().parse(&q.text).describe()
        );
    }
    println!(
        "{}",
        DataStats::compute(Some(&m.catalog), &m.judgments, &ItemTextConfig::default())
    );
    Ok(())
}

//! `charts`: draws BENCHMARKS.md's charts from loadgen's (and the peers' `peerload`) output.
//!
//! ```text
//! charts OUT_DIR RESULT_FILE...
//! ```
//!
//! Every `result store=S mode=M phase=P ... ops_per_sec=X p50_us=Y p99_us=Z` line of the files is
//! a point; its concurrency is the `concurrency=C` of the last header line before it (loadgen
//! prints `loadgen store=.. concurrency=C ..`), else a `-cC` in the file name. For each store it
//! writes `OUT_DIR/<store>.svg`: four panels (read and write throughput, read and write p99)
//! against concurrency, one line per mode (the session layer, its honest raw baseline, the peer).
//! It also writes `OUT_DIR/tables.md`: per store and phase, a row per concurrency with each
//! mode's ops/s and p99, the session ÷ raw ratio (the median of the per-round ratios loadgen
//! prints in its `ratio` lines), session ÷ peer, and p99 session ÷ raw, for BENCHMARKS.md.
//! `benches/sweep.sh` runs the benchmarks and then this, so rerunning them redraws the charts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use session_benches::Result;

/// (store, phase, mode) -> concurrency -> (ops/s, p99 µs)
type Points = BTreeMap<(String, String, String), BTreeMap<u32, (f64, f64)>>;

/// (store, phase) -> concurrency -> session ÷ raw (loadgen's `ratio` lines)
type Ratios = BTreeMap<(String, String), BTreeMap<u32, f64>>;

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

fn concurrency_in_name(path: &Path) -> Option<u32> {
    let name = path.file_stem()?.to_str()?;
    name.split('-')
        .find_map(|part| part.strip_prefix('c')?.parse().ok())
}

/// Reads every result line of `path` into `points`.
fn read(path: &Path, points: &mut Points, ratios: &mut Ratios) -> Result<usize> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut concurrency = concurrency_in_name(path);
    let mut n = 0;
    for line in text.lines() {
        if line.starts_with("ratio ") {
            if let (Some(store), Some(phase), Some(r), Some(c)) = (
                field(line, "store"),
                field(line, "phase"),
                field(line, "session_over_raw").and_then(|r| r.parse().ok()),
                concurrency,
            ) {
                ratios
                    .entry((store.to_string(), phase.to_string()))
                    .or_default()
                    .insert(c, r);
            }
            continue;
        }
        if !line.starts_with("result ") {
            if let Some(c) = field(line, "concurrency").and_then(|c| c.parse().ok()) {
                concurrency = Some(c);
            }
            continue;
        }
        let get = |k: &str| {
            field(line, k).ok_or_else(|| format!("{}: no {k}= in {line:?}", path.display()))
        };
        let c = concurrency.ok_or_else(|| {
            format!(
                "{}: a result before any concurrency= header (and no -cN in the name)",
                path.display()
            )
        })?;
        let ops: f64 = get("ops_per_sec")?.parse()?;
        let p99: f64 = get("p99_us")?.parse()?;
        points
            .entry((
                get("store")?.to_string(),
                get("phase")?.to_string(),
                get("mode")?.to_string(),
            ))
            .or_default()
            .insert(c, (ops, p99));
        n += 1;
    }
    Ok(n)
}

fn colour(mode: &str) -> RGBColor {
    match mode {
        "session" => RGBColor(0x1f, 0x77, 0xb4),
        "raw" => RGBColor(0x2c, 0xa0, 0x2c),
        _ => RGBColor(0xd6, 0x27, 0x28),
    }
}

/// One panel: `value` (throughput or p99) of each mode of `store`'s `phase`, against
/// concurrency on a log axis.
fn panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    points: &Points,
    store: &str,
    phase: &str,
    p99: bool,
) -> Result<()> {
    let series: Vec<(&str, Vec<(u32, f64)>)> = points
        .iter()
        .filter(|((s, p, _), _)| s == store && p == phase)
        .map(|((_, _, mode), by_c)| {
            let line = by_c
                .iter()
                .map(|(c, (ops, p))| (*c, if p99 { *p } else { *ops }))
                .collect();
            (mode.as_str(), line)
        })
        .collect();
    if series.is_empty() {
        return Ok(());
    }
    let (cmin, cmax) = series
        .iter()
        .flat_map(|(_, l)| l.iter().map(|(c, _)| *c))
        .fold((u32::MAX, 1), |(lo, hi), c| (lo.min(c), hi.max(c)));
    let vmax = series
        .iter()
        .flat_map(|(_, l)| l.iter().map(|(_, v)| *v))
        .fold(1.0f64, f64::max);
    let vmin = series
        .iter()
        .flat_map(|(_, l)| l.iter().map(|(_, v)| *v))
        .fold(f64::MAX, f64::min)
        .max(0.1);
    let caption = if p99 {
        format!("{store} {phase}: p99 latency (µs, log)")
    } else {
        format!("{store} {phase}: operations per second")
    };
    let x = ((cmin.max(1) as f64) / 1.5)..(cmax as f64 * 1.5);
    let mut chart = ChartBuilder::on(area);
    chart
        .caption(caption, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(30)
        .y_label_area_size(60);
    if p99 {
        let mut c =
            chart.build_cartesian_2d(x.log_scale(), (vmin / 2.0..vmax * 2.0).log_scale())?;
        c.configure_mesh()
            .x_desc("concurrency")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .draw()?;
        lines(&mut c, &series)?;
    } else {
        let mut c = chart.build_cartesian_2d(x.log_scale(), 0.0..vmax * 1.15)?;
        c.configure_mesh()
            .x_desc("concurrency")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{:.0}k", v / 1000.0))
            .draw()?;
        lines(&mut c, &series)?;
    }
    Ok(())
}

/// One line with dots per mode, and the legend.
fn lines<'a, Y>(
    c: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<LogCoord<f64>, Y>>,
    series: &[(&str, Vec<(u32, f64)>)],
) -> Result<()>
where
    Y: Ranged<ValueType = f64>,
{
    for (mode, line) in series {
        let col = colour(mode);
        c.draw_series(LineSeries::new(
            line.iter().map(|(cc, v)| (*cc as f64, *v)),
            col.stroke_width(2),
        ))?
        .label(*mode)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], col.stroke_width(2)));
        c.draw_series(
            line.iter()
                .map(|(cc, v)| Circle::new((*cc as f64, *v), 3, col.filled())),
        )?;
    }
    c.configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    Ok(())
}

fn draw(out: &Path, points: &Points, store: &str) -> Result<PathBuf> {
    let file = out.join(format!("{store}.svg"));
    let root = SVGBackend::new(&file, (1100, 760)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((2, 2));
    panel(&panels[0], points, store, "read", false)?;
    panel(&panels[1], points, store, "write", false)?;
    panel(&panels[2], points, store, "read", true)?;
    panel(&panels[3], points, store, "write", true)?;
    root.present()?;
    drop(panels);
    drop(root);
    Ok(file)
}

/// The markdown tables of every store and phase (see the module docs).
fn tables(points: &Points, ratios: &Ratios) -> String {
    let mut md = String::new();
    let mut keys: Vec<(&str, &str)> = points
        .keys()
        .map(|(s, p, _)| (s.as_str(), p.as_str()))
        .collect();
    keys.dedup();
    for (store, phase) in keys {
        let modes: Vec<&str> = points
            .keys()
            .filter(|(s, p, _)| s == store && p == phase)
            .map(|(_, _, m)| m.as_str())
            .collect();
        let peer = modes
            .iter()
            .copied()
            .find(|m| *m != "session" && *m != "raw");
        let at = |mode: &str, c: u32| {
            points
                .get(&(store.into(), phase.into(), mode.into()))?
                .get(&c)
                .copied()
        };
        let mut cs: Vec<u32> = modes
            .iter()
            .filter_map(|m| points.get(&(store.into(), phase.into(), (*m).into())))
            .flat_map(|by_c| by_c.keys().copied())
            .collect();
        cs.sort_unstable();
        cs.dedup();
        md.push_str(&format!("\n**{store} {phase}**\n\n"));
        md.push_str("| concurrency | session ops/s | raw ops/s | session ÷ raw |");
        if let Some(p) = peer {
            md.push_str(&format!(" {p} ops/s | session ÷ {p} |"));
        }
        md.push_str(" p99 µs session / raw");
        if let Some(p) = peer {
            md.push_str(&format!(" / {p}"));
        }
        md.push_str(" | p99 session ÷ raw |\n|---:|---:|---:|---:|");
        if peer.is_some() {
            md.push_str("---:|---:|");
        }
        md.push_str("---:|---:|\n");
        let num = |x: Option<f64>, f: &dyn Fn(f64) -> String| x.map_or("–".to_string(), f);
        let ops = |x: f64| format!("{x:.0}");
        let ratio = |x: f64| format!("{x:.2}");
        for c in cs {
            let (s, r) = (at("session", c), at("raw", c));
            let rr = ratios
                .get(&(store.into(), phase.into()))
                .and_then(|by_c| by_c.get(&c))
                .copied()
                .or_else(|| Some(s?.0 / r?.0));
            md.push_str(&format!(
                "| {c} | {} | {} | {} |",
                num(s.map(|x| x.0), &ops),
                num(r.map(|x| x.0), &ops),
                num(rr, &ratio)
            ));
            let p = peer.and_then(|p| at(p, c));
            if peer.is_some() {
                md.push_str(&format!(
                    " {} | {} |",
                    num(p.map(|x| x.0), &ops),
                    num(s.zip(p).map(|(s, p)| s.0 / p.0), &ratio)
                ));
            }
            let us = |x: f64| format!("{x:.0}");
            md.push_str(&format!(
                " {} / {}",
                num(s.map(|x| x.1), &us),
                num(r.map(|x| x.1), &us)
            ));
            if peer.is_some() {
                md.push_str(&format!(" / {}", num(p.map(|x| x.1), &us)));
            }
            md.push_str(&format!(
                " | {} |\n",
                num(s.zip(r).map(|(s, r)| s.1 / r.1), &ratio)
            ));
        }
    }
    md
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(out), files) = (args.next(), args.collect::<Vec<_>>()) else {
        eprintln!("usage: charts OUT_DIR RESULT_FILE...");
        std::process::exit(2);
    };
    let run = || -> Result<()> {
        if files.is_empty() {
            return Err("no result files given: usage: charts OUT_DIR RESULT_FILE...".into());
        }
        let mut points = Points::new();
        let mut ratios = Ratios::new();
        for f in &files {
            read(Path::new(f), &mut points, &mut ratios)?;
        }
        let out = PathBuf::from(&out);
        std::fs::create_dir_all(&out)?;
        let stores: std::collections::BTreeSet<&str> =
            points.keys().map(|(s, _, _)| s.as_str()).collect();
        for store in stores {
            println!("{}", draw(&out, &points, store)?.display());
        }
        let md = out.join("tables.md");
        std::fs::write(&md, tables(&points, &ratios))?;
        println!("{}", md.display());
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("charts: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_results_with_their_concurrency() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("memory-c16.txt");
        std::fs::write(
            &f,
            "loadgen store=memory sessions=1 ops=2 concurrency=64 workers=2\n\
             result store=memory mode=session phase=read ops=2 secs=1 ops_per_sec=100 p50_us=1.0 p99_us=9.5\n\
             result store=memory mode=raw phase=read ops=2 secs=1 ops_per_sec=200 p50_us=1.0 p99_us=2.5\n",
        )
        .expect("write");
        let mut points = Points::new();
        let mut ratios = Ratios::new();
        assert_eq!(read(&f, &mut points, &mut ratios).expect("read"), 2);
        let key = (
            "memory".to_string(),
            "read".to_string(),
            "session".to_string(),
        );
        assert_eq!(points[&key][&64], (100.0, 9.5));
        let svg = draw(dir.path(), &points, "memory").expect("draw");
        let text = std::fs::read_to_string(svg).expect("svg");
        assert!(
            text.contains("<svg") && text.contains("memory read"),
            "{text:.200}"
        );
        // the file name gives the concurrency when no header does
        let g = dir.path().join("peer-c256.txt");
        std::fs::write(
            &g,
            "result store=memory mode=tower-sessions phase=read ops=2 secs=1 ops_per_sec=50 p50_us=1 p99_us=3\n",
        )
        .expect("write");
        read(&g, &mut points, &mut ratios).expect("read");
        let key = (
            "memory".to_string(),
            "read".to_string(),
            "tower-sessions".to_string(),
        );
        assert!(points[&key].contains_key(&256));
        // the table: session ÷ raw from the ops/s when no ratio line says it, p99 ÷ p99
        let md = tables(&points, &ratios);
        assert!(md.contains("**memory read**"), "{md}");
        assert!(md.contains("| 64 | 100 | 200 | 0.50 |"), "{md}");
        assert!(md.contains("10 / 2 / –"), "{md}");
        assert!(md.contains("| 3.80 |"), "{md}");
    }
}

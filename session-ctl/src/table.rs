//! Plain text tables and numbers for people.

use crate::time;

/// `rows` under `headers`, columns padded to their widest cell, two spaces apart.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i + 1 == widths.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// A time for a table: `2025-01-31 23:59:59Z`, or `-`.
pub fn when(ms: Option<u64>) -> String {
    ms.map_or_else(
        || "-".to_owned(),
        |ms| {
            let t = time::rfc3339(ms);
            // 2025-01-31T23:59:59.250Z -> 2025-01-31 23:59:59Z
            format!("{} {}Z", &t[..10], &t[11..19])
        },
    )
}

/// A deadline for a table: `in 29m 10s`, or `-`.
pub fn expires(deadline_ms: Option<u64>, now_ms: u64) -> String {
    deadline_ms.map_or_else(
        || "-".to_owned(),
        |d| format!("in {}", time::short(d.saturating_sub(now_ms))),
    )
}

/// Bytes in binary units: `512 B`, `1.5 KiB`, `3.2 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let t = render(
            &["ID", "OWNER"],
            &[
                vec!["a".into(), "ada".into()],
                vec!["bbbb".into(), "-".into()],
            ],
        );
        assert_eq!(t, "ID    OWNER\na     ada\nbbbb  -\n");
        assert_eq!(when(Some(1_000)), "1970-01-01 00:00:01Z");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(expires(Some(61_000), 0), "in 1m 1s");
    }
}

//! `crashsim show --html`: an [`Explanation`] as one self-contained HTML page (inline CSS and
//! SVG, no script, no network). Every text is escaped; colour is never the only cue: units carry
//! the words "persisted" and "lost" and lost units a hatched pattern, marks carry letters.

use std::fmt::Write as _;

use super::show::{Explanation, LineMark, LineRun, TimelineEvent};

/// `s` with `& < > " '` escaped, for text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The shared stylesheet: dark text on white (contrast above 7:1), readable at 1280 px.
pub const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;color:#111;background:#fff;margin:0 auto;max-width:1240px;padding:16px 20px;line-height:1.4}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.2em;margin:1.4em 0 .4em;border-bottom:2px solid #333}
code,pre,.mono{font-family:ui-monospace,'DejaVu Sans Mono',Menlo,monospace;font-size:.92em}
pre{background:#f3f3f3;border:1px solid #999;padding:8px;overflow-x:auto;white-space:pre-wrap}
table{border-collapse:collapse;margin:.4em 0}th,td{border:1px solid #888;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#e8e8e8}dl{display:grid;grid-template-columns:max-content auto;gap:2px 14px}dt{font-weight:bold}dd{margin:0}
.persisted{background:#0b3d91;color:#fff;padding:0 4px;border-radius:3px}
.lost{background:repeating-linear-gradient(45deg,#fff,#fff 3px,#f2c4c4 3px,#f2c4c4 6px);color:#7a0000;border:1px solid #7a0000;padding:0 4px;border-radius:3px}
.crash{color:#a00000;font-weight:bold}.note{color:#444}.lane{display:flex;flex-wrap:wrap;gap:4px;margin:4px 0}
.chip{border:1px solid #555;border-radius:4px;padding:1px 6px;background:#f7f7f7;font-size:.85em}
.lanehead{font-weight:bold;min-width:7em}.ok{color:#05611f;font-weight:bold}.bad{color:#a00000;font-weight:bold}
svg text{font-family:ui-monospace,'DejaVu Sans Mono',Menlo,monospace}
";

/// A whole page around `body`.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head>\n<body>\n{body}</body></html>\n",
        escape(title)
    )
}

/// `n` with thousands separators.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} B"),
    }
}

/// The explanation as an HTML page; `repro` is the one-line command that reproduces it.
pub fn render_html(x: &Explanation, repro: &str) -> String {
    let v = &x.violation;
    let addr = v.addr.map(|a| format!("{:#x}", a.0));
    let point = x.crash_point.map_or("none (run-time violation)".to_string(), |p| p.to_string());
    let title = match x.crash_point {
        Some(p) => format!("crashsim: {:?} at crash point {p}", v.class),
        None => format!("crashsim: {:?} (run-time violation)", v.class),
    };
    let mut b = String::new();
    let _ = writeln!(
        b,
        "<h1>{}</h1>\n<p class=\"note\">target <code>{}</code>, bugs: {}; trace of {} events</p>",
        escape(&title),
        escape(&x.target),
        escape(&if x.bugs.is_empty() { "none".to_string() } else { x.bugs.join(", ") }),
        grouped(x.trace_events as u64)
    );
    let _ = writeln!(b, "<h2>Repro</h2>\n<pre id=\"repro\">{}</pre>", escape(repro));
    violation(&mut b, x, addr.as_deref(), &point);
    let heading = if x.crash_point.is_some() { "around the crash point" } else { "of the run" };
    let _ = writeln!(b, "<h2>Timeline {heading}</h2>");
    timeline_svg(&mut b, x);
    pending(&mut b, x);
    let origin = match (x.input_kind, x.seed) {
        (super::InputKind::Json, _) => "as JSON: minimized or hand-written".to_string(),
        (super::InputKind::Raw, Some(seed)) => format!("decoded from the bytes of sweep seed {seed}"),
        (super::InputKind::Raw, None) => "decoded from raw input bytes".to_string(),
    };
    workload(&mut b, &x.workload, &origin);
    page(&title, &b)
}

fn violation(b: &mut String, x: &Explanation, addr: Option<&str>, point: &str) {
    let v = &x.violation;
    let _ = writeln!(
        b,
        "<h2>Violation</h2>\n<dl id=\"violation\" data-class=\"{:?}\" data-addr=\"{}\" data-crash-point=\"{}\">",
        v.class,
        escape(addr.unwrap_or("none")),
        x.crash_point.map_or("none".to_string(), |p| p.to_string())
    );
    let row = |b: &mut String, k: &str, val: &str| {
        let _ = writeln!(b, "<dt>{}</dt><dd>{val}</dd>", escape(k));
    };
    row(b, "class", &format!("<strong class=\"bad\">{}</strong>", escape(&format!("{:?}", v.class))));
    row(b, "crash point", &escape(point));
    row(b, "message", &escape(&v.message));
    if let Some(f) = &v.file {
        let off = v.offset_bytes.map(|o| format!(" at byte {o}")).unwrap_or_default();
        row(b, "file", &format!("<code>{}</code>{}", escape(f), escape(&off)));
    }
    match (addr, &x.offending_word) {
        (Some(a), Some(w)) => {
            let reading = w.reading.as_deref().unwrap_or("no reading for this target");
            row(
                b,
                "offending word",
                &format!(
                    "<code id=\"offending-addr\">{}</code> holds <code>{:#018x}</code>: {}",
                    escape(a),
                    w.value,
                    escape(reading)
                ),
            );
        }
        (Some(a), None) => {
            row(b, "offending word", &format!("<code id=\"offending-addr\">{}</code>", escape(a)))
        }
        (None, _) => {
            row(b, "offending word", "no media address (the violation is about what a read returned)")
        }
    }
    let writer = match &v.evidence.last_writer {
        Some(w) => format!("#{} {} at <code>{}</code>", w.seq, escape(&w.op), escape(&w.site)),
        None => "none recorded".to_string(),
    };
    row(b, "last writer", &writer);
    row(b, "found", &format!("<code>{}</code>", escape(v.found.as_deref().unwrap_or("-"))));
    row(b, "allowed", &format!("<code>{}</code>", escape(v.allowed.as_deref().unwrap_or("-"))));
    let _ = writeln!(b, "</dl>");
}

const LABEL_W: usize = 300;
const ROW_H: usize = 20;
const HEAD_H: usize = 70;

fn event_label(e: &TimelineEvent) -> String {
    let range = match (e.addr, e.len) {
        (Some(a), Some(l)) => format!(" {a:#x}+{}", bytes(l)),
        _ => String::new(),
    };
    let seqs = if e.count > 1 {
        format!("#{}-#{} ({} {}s)", e.first_seq, e.last_seq, e.count, e.op)
    } else {
        format!("#{} {}", e.first_seq, e.op)
    };
    let who = match (e.thread, e.op_index) {
        (Some(t), Some(op)) => format!(" (thread {t}, op {op})"),
        _ => String::new(),
    };
    format!("{seqs}{range} {}{who}", e.site)
}

fn op_letter(op: &str) -> &'static str {
    match op {
        "store" => "S",
        "store_nt" => "N",
        "sfence" => "|",
        _ => "F",
    }
}

/// One lane per thread: its operations, then one row per call site it stored, flushed or fenced
/// from. `thread` is `None` for a target that does not mark its steps (one lane for all).
struct Lane<'a> {
    thread: Option<u8>,
    sites: Vec<&'a str>,
}

fn lanes(timeline: &[TimelineEvent]) -> Vec<Lane<'_>> {
    let mut lanes: Vec<Lane<'_>> = Vec::new();
    for e in timeline {
        let i = match lanes.iter().position(|l| l.thread == e.thread) {
            Some(i) => i,
            None => {
                lanes.push(Lane { thread: e.thread, sites: Vec::new() });
                lanes.len() - 1
            }
        };
        if !lanes[i].sites.contains(&e.site.as_str()) {
            lanes[i].sites.push(&e.site);
        }
    }
    lanes.sort_by_key(|l| l.thread);
    lanes
}

/// The workload's operation `op` of thread `thread`, compactly, if the workload has threads.
fn op_text(workload: &serde_json::Value, thread: u8, op: u32) -> Option<String> {
    let ops = workload.get("threads")?.get(usize::from(thread))?;
    ops.get(op as usize).map(compact)
}

/// The timeline: one lane per thread (its operations and call sites), rows per cache line
/// (folded), the crash marker.
fn timeline_svg(b: &mut String, x: &Explanation) {
    let cols = x.timeline.len().max(1);
    let col_w = ((1200 - LABEL_W) / (cols + 1)).clamp(10, 40);
    let lanes = lanes(&x.timeline);
    let site_top = HEAD_H + ROW_H;
    let lane_rows: usize = lanes.iter().map(|l| 1 + l.sites.len()).sum();
    let line_top = site_top + lane_rows * ROW_H + ROW_H + 6;
    let height = line_top + x.line_rows.len().max(1) * ROW_H + 30;
    let width = LABEL_W + (cols + 1) * col_w + 10;
    let cx = |c: usize| LABEL_W + c * col_w;
    let marks_threads = lanes.iter().any(|l| l.thread.is_some());
    let _ = writeln!(
        b,
        "<p class=\"note\">Columns are trace events in order (runs of identical events folded; hover a \
         column for its events). Upper lanes: one per thread, its operations (op N, the index in the \
         thread's list under Workload) and then one row per call site; lower rows: one per touched \
         cache line (consecutive lines with the same events folded). S = store, N = non-temporal \
         store, F = flush (clwb/clflushopt/clflush), dotted column = sfence.{}</p>",
        if marks_threads {
            ""
        } else {
            " This target does not mark its threads, so all events share one lane."
        }
    );
    let _ = writeln!(
        b,
        "<svg id=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"timeline of the trace around the crash point\">"
    );
    let _ = writeln!(
        b,
        "<defs><pattern id=\"hatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" \
         patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"#fff\"/>\
         <line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#a00000\" stroke-width=\"2.5\"/></pattern></defs>"
    );
    // Column headers (sequence numbers, rotated) and fence columns.
    for (c, e) in x.timeline.iter().enumerate() {
        let mid = cx(c) + col_w / 2;
        let label = if e.count > 1 {
            format!("#{}-{}", e.first_seq, e.last_seq)
        } else {
            format!("#{}", e.first_seq)
        };
        let _ = writeln!(
            b,
            "<g><title>{}</title><text x=\"{mid}\" y=\"{}\" font-size=\"11\" transform=\"rotate(-60 {mid} {})\">{}</text>",
            escape(&event_label(e)),
            HEAD_H - 4,
            HEAD_H - 4,
            escape(&label)
        );
        if e.op == "sfence" {
            let _ = writeln!(
                b,
                "<line x1=\"{mid}\" y1=\"{site_top}\" x2=\"{mid}\" y2=\"{}\" stroke=\"#333\" stroke-width=\"2\" stroke-dasharray=\"2 3\"/>",
                height - 24
            );
        }
        let _ = writeln!(b, "</g>");
    }
    let _ = writeln!(
        b,
        "<text x=\"4\" y=\"{}\" font-size=\"12\" font-weight=\"bold\">threads</text>",
        site_top - 6
    );
    let mut r = 0;
    for lane in &lanes {
        let y = site_top + r * ROW_H;
        let name = match lane.thread {
            Some(t) => format!("thread {t}"),
            None => "all threads".to_string(),
        };
        let _ = writeln!(
            b,
            "<g class=\"thread-lane\" data-thread=\"{}\"><rect x=\"0\" y=\"{y}\" width=\"{width}\" height=\"{ROW_H}\" fill=\"#e4e8f0\"/>\
             <text x=\"4\" y=\"{}\" font-size=\"12\" font-weight=\"bold\">{}</text>",
            lane.thread.map_or(String::new(), |t| t.to_string()),
            y + 14,
            escape(&name)
        );
        // The operations: one box per run of consecutive columns of this thread in one op.
        let mut c = 0;
        while c < x.timeline.len() {
            let e = &x.timeline[c];
            if e.thread != lane.thread || e.op_index.is_none() {
                c += 1;
                continue;
            }
            let mut end = c + 1;
            while end < x.timeline.len()
                && x.timeline[end].thread == lane.thread
                && x.timeline[end].op_index == e.op_index
            {
                end += 1;
            }
            let op = e.op_index.unwrap_or(0);
            let what = lane
                .thread
                .and_then(|t| op_text(&x.workload, t, op))
                .map_or(format!("op {op}"), |text| format!("op {op}: {text}"));
            let label = if (end - c) * col_w >= 60 { format!("op {op}") } else { op.to_string() };
            let _ = writeln!(
                b,
                "<g><title>{}</title><rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#fff\" stroke=\"#0b3d91\" stroke-width=\"2\"/>\
                 <text x=\"{}\" y=\"{}\" font-size=\"11\">{}</text></g>",
                escape(&what),
                cx(c) + 1,
                y + 2,
                (end - c) * col_w - 2,
                ROW_H - 4,
                cx(c) + 4,
                y + 14,
                escape(&label)
            );
            c = end;
        }
        let _ = writeln!(b, "</g>");
        r += 1;
        for site in &lane.sites {
            let y = site_top + r * ROW_H;
            if r % 2 == 0 {
                let _ = writeln!(
                    b,
                    "<rect x=\"0\" y=\"{y}\" width=\"{width}\" height=\"{ROW_H}\" fill=\"#f1f1f1\"/>"
                );
            }
            let _ = writeln!(
                b,
                "<text x=\"16\" y=\"{}\" font-size=\"11\">{}</text>",
                y + 14,
                escape(&short(site, 40))
            );
            for (c, e) in
                x.timeline.iter().enumerate().filter(|(_, e)| e.thread == lane.thread && e.site == *site)
            {
                let _ = writeln!(
                    b,
                    "<g><title>{}</title><rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#fff\" stroke=\"#111\"/>\
                     <text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text></g>",
                    escape(&event_label(e)),
                    cx(c) + 2,
                    y + 2,
                    col_w - 4,
                    ROW_H - 4,
                    cx(c) + col_w / 2,
                    y + 14,
                    op_letter(&e.op)
                );
            }
            r += 1;
        }
    }
    let _ = writeln!(
        b,
        "<text x=\"4\" y=\"{}\" font-size=\"12\" font-weight=\"bold\">cache lines</text>",
        line_top - 6
    );
    for (r, row) in x.line_rows.iter().enumerate() {
        let y = line_top + r * ROW_H;
        if r % 2 == 0 {
            let _ = writeln!(
                b,
                "<rect x=\"0\" y=\"{y}\" width=\"{width}\" height=\"{ROW_H}\" fill=\"#f1f1f1\"/>"
            );
        }
        let label = if row.lines > 1 {
            format!("{:#x} ({} lines)", row.line, grouped(row.lines))
        } else {
            format!("{:#x}", row.line)
        };
        let label = if row.offending { format!("{label} ◀ offending") } else { label };
        let weight = if row.offending { " font-weight=\"bold\"" } else { "" };
        let _ =
            writeln!(b, "<text x=\"4\" y=\"{}\" font-size=\"11\"{weight}>{}</text>", y + 14, escape(&label));
        for &(c, mark) in &row.marks {
            let (letter, fill, fg) = match mark {
                LineMark::Store => ("S", "#0b3d91", "#fff"),
                LineMark::StoreNt => ("N", "#5b2c83", "#fff"),
                LineMark::Flush => ("F", "#fff", "#111"),
            };
            let _ = writeln!(
                b,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{fill}\" stroke=\"#111\"/>\
                 <text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\" fill=\"{fg}\">{letter}</text>",
                cx(c) + 2,
                y + 2,
                col_w - 4,
                ROW_H - 4,
                cx(c) + col_w / 2,
                y + 14
            );
        }
    }
    if x.line_rows.is_empty() {
        let _ = writeln!(
            b,
            "<text x=\"4\" y=\"{}\" font-size=\"11\">no cache line touched in this window</text>",
            line_top + 14
        );
    }
    if let Some(c) = x.crash_column {
        let xm = cx(c);
        let _ = writeln!(
            b,
            "<g id=\"crash-marker\"><line x1=\"{xm}\" y1=\"{}\" x2=\"{xm}\" y2=\"{}\" stroke=\"#a00000\" stroke-width=\"4\"/>\
             <text x=\"{}\" y=\"{}\" font-size=\"12\" font-weight=\"bold\" fill=\"#a00000\" text-anchor=\"{}\">⚡ power cut (crash point {})</text></g>",
            HEAD_H,
            height - 18,
            xm + 4,
            height - 4,
            if c * 2 > cols { "end" } else { "start" },
            x.crash_point.unwrap_or(0)
        );
    }
    let _ = writeln!(b, "</svg>");
    if x.line_rows_omitted > 0 {
        let _ = writeln!(
            b,
            "<p class=\"note\">{} more line rows not drawn.</p>",
            grouped(x.line_rows_omitted as u64)
        );
    }
    match x.crash_column {
        Some(_) => {
            let _ = writeln!(
                b,
                "<p class=\"crash\" id=\"crash-note\">The power was cut just before trace event #{} (crash point {}).</p>",
                x.crash_point.unwrap_or(0),
                x.crash_point.unwrap_or(0)
            );
        }
        None => {
            let _ = writeln!(
                b,
                "<p id=\"crash-note\">No crash point: a run-time violation, found while the workload ran \
                 (the timeline ends at the last writer or the end of the trace).</p>"
            );
        }
    }
}

fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let tail: String = s.chars().rev().take(max - 1).collect::<Vec<_>>().into_iter().rev().collect();
    format!("…{tail}")
}

fn fate_word(persisted: bool) -> &'static str {
    if persisted { "<span class=\"persisted\">persisted</span>" } else { "<span class=\"lost\">lost</span>" }
}

fn pending(b: &mut String, x: &Explanation) {
    let _ = writeln!(b, "<h2>Pending lines at the crash</h2>");
    if x.crash_point.is_none() {
        let _ = writeln!(
            b,
            "<p id=\"unit-counts\" data-persisted=\"0\" data-lost=\"0\">No crash state: nothing was pending \
             (<span class=\"persisted\">0 persisted</span>, <span class=\"lost\">0 lost</span>).</p>"
        );
        return;
    }
    let _ = writeln!(
        b,
        "<p id=\"unit-counts\" data-persisted=\"{}\" data-lost=\"{}\">In the chosen crash state, of the 8-byte units \
         pending in {} cache lines: <span class=\"persisted\">{} persisted</span> and \
         <span class=\"lost\">{} lost</span>.</p>",
        x.persisted_units,
        x.lost_units,
        grouped(x.pending_lines as u64),
        grouped(x.persisted_units as u64),
        grouped(x.lost_units as u64)
    );
    if let Some(t) = &x.torn {
        let _ = writeln!(
            b,
            "<p>The power was cut inside store #{} (<code>{}</code>): its first {} of {} units were written.</p>",
            t.seq,
            escape(&t.site),
            t.written,
            t.units
        );
    }
    if x.pending_runs.is_empty() {
        return;
    }
    let _ = writeln!(
        b,
        "<table id=\"pending\"><tr><th>cache line(s)</th><th>units (offset in line: fate)</th><th>persisted</th><th>lost</th><th>stores</th></tr>"
    );
    for r in &x.pending_runs {
        pending_row(b, r);
    }
    let _ = writeln!(b, "</table>");
    if x.pending_runs_omitted > 0 {
        let _ = writeln!(
            b,
            "<p class=\"note\">{} more runs of lines not listed.</p>",
            grouped(x.pending_runs_omitted as u64)
        );
    }
    if let Some(r) = x.pending_runs.iter().find(|r| r.offending) {
        let _ = writeln!(
            b,
            "<h3>Units of the offending line</h3>\n<table><tr><th>fate</th><th>address</th><th>value</th><th>store</th><th>reading</th></tr>"
        );
        for u in &r.units {
            let _ = writeln!(
                b,
                "<tr><td>{}</td><td><code>{:#x}</code></td><td><code>{:#018x}</code></td><td>#{} <code>{}</code></td><td>{}</td></tr>",
                fate_word(u.persisted),
                u.addr,
                u.value,
                u.seq,
                escape(&u.site),
                escape(u.reading.as_deref().unwrap_or(""))
            );
        }
        let _ = writeln!(b, "</table>");
    }
}

fn pending_row(b: &mut String, r: &LineRun) {
    let what = match r.line {
        Some(l) if r.lines > 1 => format!(
            "<code>{l:#x}</code>–<code>{:#x}</code> ({} lines)",
            l + (r.lines - 1) * crate::pmem::LINE_BYTES,
            grouped(r.lines)
        ),
        Some(l) => format!("<code>{l:#x}</code>"),
        None => "non-temporal units".to_string(),
    };
    let what = if r.offending { format!("{what} <strong>(offending)</strong>") } else { what };
    let mut units = String::new();
    for u in &r.units {
        let off = match r.line {
            Some(l) => format!("+{}", u.addr - l),
            None => format!("{:#x}", u.addr),
        };
        let _ = write!(units, "{}: {} ", escape(&off), fate_word(u.persisted));
    }
    let mut stores: Vec<String> = Vec::new();
    for u in &r.units {
        let s = format!("#{} {}", u.seq, u.site);
        if !stores.contains(&s) {
            stores.push(s);
        }
    }
    let _ = writeln!(
        b,
        "<tr><td>{what}</td><td>{units}</td><td>{}</td><td>{}</td><td class=\"mono\">{}</td></tr>",
        grouped(r.persisted as u64),
        grouped(r.lost as u64),
        escape(&stores.join(", "))
    );
}

fn workload(b: &mut String, w: &serde_json::Value, origin: &str) {
    let _ = writeln!(
        b,
        "<h2>Workload</h2>\n<p class=\"note\">One lane of operations per thread ({}).</p>",
        escape(origin)
    );
    match w.get("threads").and_then(serde_json::Value::as_array) {
        Some(threads) => {
            let _ = writeln!(b, "<div id=\"workload\">");
            for (t, ops) in threads.iter().enumerate() {
                let _ = write!(b, "<div class=\"lane\"><span class=\"lanehead\">thread {t}</span>");
                for (i, op) in ops.as_array().into_iter().flatten().enumerate() {
                    let _ = write!(b, "<span class=\"chip mono\">{i}: {}</span>", escape(&compact(op)));
                }
                let _ = writeln!(b, "</div>");
            }
            if let Some(sched) = w.get("schedule") {
                let _ = writeln!(b, "<p>schedule: <code>{}</code></p>", escape(&sched.to_string()));
            }
            if let Some(opts) = w.get("options") {
                let _ = writeln!(b, "<p>options: <code>{}</code></p>", escape(&opts.to_string()));
            }
            let _ = writeln!(b, "</div>");
        }
        None => {
            let _ = writeln!(b, "<pre id=\"workload\">{}</pre>", escape(&w.to_string()));
        }
    }
}

/// `{"Store":{"len":4096,"map":0}}` as `Store len=4096 map=0`.
fn compact(op: &serde_json::Value) -> String {
    match op {
        serde_json::Value::Object(m) if m.len() == 1 => {
            let (name, args) = m.iter().next().expect("one entry");
            match args {
                serde_json::Value::Object(a) => {
                    let args: Vec<String> = a.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    format!("{name} {}", args.join(" "))
                }
                other => format!("{name} {other}"),
            }
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }

    fn event(thread: Option<u8>, site: &str) -> TimelineEvent {
        TimelineEvent {
            first_seq: 0,
            last_seq: 0,
            count: 1,
            op: "store".to_string(),
            addr: Some(0),
            len: Some(8),
            site: site.to_string(),
            thread,
            op_index: thread.map(u32::from),
        }
    }

    #[test]
    fn lanes_are_per_thread_with_their_own_call_sites() {
        let tl = [event(Some(1), "a"), event(Some(0), "b"), event(Some(1), "c"), event(Some(1), "a")];
        let got: Vec<(Option<u8>, Vec<&str>)> = lanes(&tl).into_iter().map(|l| (l.thread, l.sites)).collect();
        assert_eq!(got, [(Some(0), vec!["b"]), (Some(1), vec!["a", "c"])]);
        let unmarked = [event(None, "a"), event(None, "b")];
        let got: Vec<(Option<u8>, Vec<&str>)> =
            lanes(&unmarked).into_iter().map(|l| (l.thread, l.sites)).collect();
        assert_eq!(got, [(None, vec!["a", "b"])]);
        let w = serde_json::json!({"threads": [[{"Create": {"file": 0}}], [{"Fsync": {"file": 1}}]]});
        assert_eq!(op_text(&w, 1, 0).as_deref(), Some("Fsync file=1"));
        assert_eq!(op_text(&w, 2, 0), None);
    }

    #[test]
    fn ops_print_compactly() {
        let op = serde_json::json!({"Store": {"len": 4096, "map": 0}});
        assert_eq!(compact(&op), "Store len=4096 map=0");
    }
}

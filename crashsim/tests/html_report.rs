//! `show --html` and `report`, checked on the HTML text and, in a real headless Chromium, on the
//! DOM it builds and on a screenshot that must not be blank.
//!
//! Where `chromium` is missing the browser checks are skipped with a message, unless `CI` is
//! set: then a missing browser fails the test (`.ci/run` installs it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const BIN: &str = env!("CARGO_BIN_EXE_crashsim");
const REGRESSIONS: usize = 19;
/// Browsers run at once over the regression pages.
const BROWSERS: usize = 4;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn crashsim(args: &[&str]) -> Output {
    Command::new(BIN).args(args).current_dir(repo()).output().expect("run crashsim")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("crashsim-html-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The browser, if installed; with `CI` set, a missing browser is a failure.
fn browser() -> Option<&'static str> {
    static FOUND: OnceLock<Option<&'static str>> = OnceLock::new();
    *FOUND.get_or_init(|| {
        let found = ["chromium", "chromium-browser"].into_iter().find(|b| {
            Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success())
        });
        match found {
            None if ci() => panic!("chromium is missing and CI is set: install it (apt-get install chromium)"),
            None => eprintln!(
                "SKIPPED the browser checks: chromium is missing (apt-get install chromium); the HTML text is still checked"
            ),
            Some(_) => {}
        }
        found
    })
}

fn url(file: &Path) -> String {
    format!("file://{}", std::fs::canonicalize(file).expect("page exists").display())
}

const HEADLESS: [&str; 4] = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"];

/// The DOM Chromium builds from `file`.
fn dump_dom(browser: &str, file: &Path) -> String {
    let out =
        Command::new(browser).args(HEADLESS).arg("--dump-dom").arg(url(file)).output().expect("run chromium");
    assert!(
        out.status.success(),
        "chromium --dump-dom {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = String::from_utf8(out.stdout).expect("utf-8 DOM");
    assert!(dom.contains("</html>"), "no DOM for {}", file.display());
    dom
}

/// A 1280x2000 screenshot of `file`, as PNG bytes.
fn screenshot(browser: &str, file: &Path, png: &Path) -> Vec<u8> {
    let out = Command::new(browser)
        .args(HEADLESS)
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1280,2000")
        .arg(url(file))
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium --screenshot {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(png).expect("screenshot written");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let width = u32::from_be_bytes(bytes[16..20].try_into().expect("IHDR"));
    assert_eq!(width, 1280, "screenshot width");
    bytes
}

/// Size of the PNG of an empty page: a screenshot of the same size with all pixels identical.
fn blank_png_size(browser: &str) -> usize {
    static SIZE: OnceLock<usize> = OnceLock::new();
    *SIZE.get_or_init(|| {
        let d = tmp("blank");
        let page = d.join("blank.html");
        std::fs::write(&page, "<!DOCTYPE html><html><body></body></html>").expect("write");
        screenshot(browser, &page, &d.join("blank.png")).len()
    })
}

/// The page rendered to something other than a blank canvas: its PNG (deflate-compressed
/// pixels) is several times the size of an all-white one.
fn assert_not_blank(browser: &str, page: &Path) {
    let png = page.with_extension("png");
    let size = screenshot(browser, page, &png).len();
    let blank = blank_png_size(browser);
    assert!(size > 3 * blank, "{}: screenshot of {size} bytes, a blank page gives {blank}", page.display());
}

/// What a page must carry, on the HTML text and in the DOM.
fn assert_carries(what: &str, text: &str, needles: &[String]) {
    for n in needles {
        assert!(text.contains(n.as_str()), "{what}: missing {n}");
    }
}

fn self_contained(name: &str, html: &str) {
    for bad in ["<script", "<link", "src=\"http", "href=\"http", "@import", "url(http"] {
        assert!(!html.contains(bad), "{name}: not self-contained ({bad})");
    }
}

#[test]
fn show_html_for_every_regression_artifact() {
    let started = std::time::Instant::now();
    let out = tmp("show");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(repo().join("corpus/regressions"))
        .expect("corpus/regressions")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("manifest.json").is_file())
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), REGRESSIONS, "the committed regression artifacts");
    let browser = browser();
    let mut checks = Vec::new();
    let mut multi_thread_pages = 0;
    for dir in &dirs {
        let name = dir.file_name().expect("name").to_string_lossy().into_owned();
        let page = out.join(format!("{name}.html"));
        let o = crashsim(&["show", "--html", page.to_str().expect("utf-8"), dir.to_str().expect("utf-8")]);
        assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
        let wrapped: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).expect("manifest"))
                .expect("JSON");
        let m = &wrapped["manifest"];
        let v = &m["violation"];
        let class = v["class"].as_str().expect("class");
        let mut needles = vec![format!("data-class=\"{class}\""), format!("<title>crashsim: {class}")];
        match v["addr"].as_u64() {
            Some(a) => {
                needles.push(format!("data-addr=\"{a:#x}\""));
                needles.push(format!("<code id=\"offending-addr\">{a:#x}</code>"));
            }
            None => needles.push("data-addr=\"none\"".to_string()),
        }
        match m["crash_point"].as_u64() {
            Some(p) => {
                needles.push(format!("data-crash-point=\"{p}\""));
                needles.push(format!("crash point {p}"));
                needles.push("id=\"crash-marker\"".to_string());
            }
            None => needles.push("data-crash-point=\"none\"".to_string()),
        }
        let (persisted, lost) =
            (v["persisted_count"].as_u64().expect("n"), v["lost_count"].as_u64().expect("n"));
        needles.push(format!("data-persisted=\"{persisted}\" data-lost=\"{lost}\""));
        needles.push(format!("crashsim repro {}", dir.display()));
        let html = std::fs::read_to_string(&page).expect("page");
        self_contained(&name, &html);
        assert_carries(&name, &html, &needles);
        if m["crash_point"].is_null() {
            assert!(!html.contains("id=\"crash-marker\""), "{name}: a run-time violation has no crash point");
        }
        assert!(html.len() < 200_000, "{name}: page of {} bytes", html.len());
        // daxfs marks every scheduling step: the timeline has a lane per thread that acted.
        let lanes =
            (0..8).filter(|t| html.contains(&format!("class=\"thread-lane\" data-thread=\"{t}\""))).count();
        assert!(lanes >= 1, "{name}: no thread lane in the timeline");
        multi_thread_pages += usize::from(lanes >= 2);
        checks.push((name, page, needles));
    }
    assert!(multi_thread_pages > 0, "no artifact's timeline shows two threads");
    if let Some(b) = browser {
        // Chromium spends most of a run starting up: a few at a time.
        let checks = &checks;
        std::thread::scope(|scope| {
            for w in 0..BROWSERS {
                scope.spawn(move || {
                    for (name, page, needles) in checks.iter().skip(w).step_by(BROWSERS) {
                        let dom = dump_dom(b, page);
                        assert_carries(&format!("{name} (DOM)"), &dom, needles);
                        assert_not_blank(b, page);
                    }
                });
            }
        });
    }
    eprintln!("show --html over {} artifacts: {:.1}s", dirs.len(), started.elapsed().as_secs_f64());
}

/// Runs a sweep (exit status not judged) and returns its directory.
fn sweep(dir: &Path, args: &[&str]) {
    let mut all =
        vec!["sweep", "--jobs", "1", "--progress-interval", "0", "--out", dir.to_str().expect("utf-8")];
    all.extend_from_slice(args);
    let o = crashsim(&all);
    assert!(matches!(o.status.code(), Some(0 | 1)), "sweep {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

fn report(dir: &Path, out: &Path) -> String {
    let o = crashsim(&["report", dir.to_str().expect("utf-8"), "-o", out.to_str().expect("utf-8")]);
    assert!(o.status.success(), "report {}: {}", dir.display(), String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(out).expect("report written");
    self_contained("report", &html);
    html
}

fn artifact_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("sweep dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("manifest.json").is_file())
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every artifact is linked, and its page exists and names its class.
fn assert_links(html: &str, out_dir: &Path, pages: &[(String, String)]) {
    let browser = browser();
    for (file, class) in pages {
        let href = format!("href=\"report.d/{file}\"");
        assert!(html.contains(&href), "report does not link {file}");
        let page = out_dir.join("report.d").join(file);
        let text = std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        assert!(text.contains(&format!("data-class=\"{class}\"")), "{file}: class {class}");
        if let Some(b) = browser {
            assert!(dump_dom(b, &page).contains(&format!("data-class=\"{class}\"")), "{file} (DOM)");
        }
    }
}

fn class_of(artifact: &Path) -> String {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(artifact.join("manifest.json")).expect("manifest"))
            .expect("JSON");
    v["manifest"]["violation"]["class"].as_str().expect("class").to_string()
}

#[test]
fn report_of_a_buggy_sweep_links_every_artifact() {
    let t = tmp("buggy");
    let sw = t.join("sweep");
    sweep(
        &sw,
        &[
            "--bug",
            "no-zero-on-alloc",
            "--bug",
            "commit-before-log-fenced",
            "--seeds",
            "0..3",
            "--pmd-blocks",
            "8",
        ],
    );
    let names = artifact_names(&sw);
    assert!(!names.is_empty(), "the bugs give artifacts");
    let out = t.join("report.html");
    let html = report(&sw, &out);
    assert!(html.contains("VIOLATIONS FOUND"), "verdict");
    assert!(
        html.contains("id=\"by-class\"") && html.contains("id=\"by-site\""),
        "violations by class and site"
    );
    assert!(html.contains("id=\"rate-chart\""), "seeds per second chart");
    assert!(html.contains("id=\"slowest\""), "slowest seeds");
    let pages: Vec<(String, String)> =
        names.iter().map(|n| (format!("{n}.html"), class_of(&sw.join(n)))).collect();
    assert_links(&html, &t, &pages);
    if let Some(b) = browser() {
        let dom = dump_dom(b, &out);
        assert!(dom.contains("VIOLATIONS FOUND") && dom.contains("id=\"rate-chart\""), "report DOM");
        assert_not_blank(b, &out);
    }
}

#[test]
fn report_merges_shard_directories() {
    let t = tmp("shards");
    let shards = t.join("shards");
    for i in 0..2 {
        let part = format!("slice:{i}/2");
        sweep(
            &shards.join(format!("shard-{i}")),
            &["--bug", "no-zero-on-alloc", "--seeds", "0..4", "--pmd-blocks", "8", "--partition", &part],
        );
    }
    let out = t.join("report.html");
    let html = report(&shards, &out);
    assert!(html.contains("merged from 2 shards"), "says it merged");
    assert!(html.contains("<th>seeds</th><td>0..4</td>"), "the whole range");
    let mut pages = Vec::new();
    for i in 0..2 {
        let dir = shards.join(format!("shard-{i}"));
        for n in artifact_names(&dir) {
            pages.push((format!("shard-{i}-{n}.html"), class_of(&dir.join(&n))));
        }
    }
    assert!(!pages.is_empty());
    assert_links(&html, &t, &pages);
}

#[test]
fn report_of_a_clean_sweep_says_so_and_shows_coverage() {
    let t = tmp("clean");
    // toylog: every crash state covered, so clean.
    let toy = t.join("toylog");
    sweep(&toy, &["--target", "toylog", "--seeds", "0..5"]);
    // A saved JSON summary beside the results is read too.
    let merged = crashsim(&["merge", toy.join("results.jsonl").to_str().expect("utf-8")]);
    assert!(merged.status.success());
    std::fs::write(toy.join("summary.json"), &merged.stdout).expect("write summary");
    let out = t.join("toylog.html");
    let html = report(&toy, &out);
    for n in [
        "data-coverage=\"complete\"",
        "data-violations=\"0\"",
        "coverage: complete: every crash state",
        "clean: 0 violations",
    ] {
        assert!(html.contains(n), "toylog report: missing {n}");
    }
    // A small daxfs sweep with the bounded strategy is sampled, and says so instead of clean.
    let dax = t.join("daxfs");
    sweep(
        &dax,
        &["--seeds", "0..1", "--pmd-blocks", "8", "--states-per-point", "8", "--strategy", "bounded"],
    );
    let out2 = t.join("daxfs.html");
    let html2 = report(&dax, &out2);
    for n in ["data-coverage=\"sampled\"", "coverage: sampled:", "no violation found in the sampled states"] {
        assert!(html2.contains(n), "daxfs report: missing {n}");
    }
    assert!(!html2.contains(">clean"), "a sampled sweep is not called clean");
    if let Some(b) = browser() {
        let dom = dump_dom(b, &out);
        assert!(dom.contains("data-coverage=\"complete\"") && dom.contains("clean: 0 violations"), "DOM");
        let dom2 = dump_dom(b, &out2);
        assert!(dom2.contains("data-coverage=\"sampled\""), "DOM");
        assert_not_blank(b, &out);
    }
}

#[test]
fn bad_input_is_one_line_and_exit_3() {
    let t = tmp("bad");
    let missing = t.join("missing");
    let out = t.join("r.html");
    let bad_summary = t.join("bad-summary");
    sweep(&bad_summary, &["--target", "toylog", "--seeds", "0..2"]);
    std::fs::write(bad_summary.join("summary.json"), "{}").expect("write");
    for args in [
        vec!["report", missing.to_str().expect("utf-8"), "-o", out.to_str().expect("utf-8")],
        vec!["report", t.to_str().expect("utf-8"), "-o", out.to_str().expect("utf-8")],
        vec!["report", bad_summary.to_str().expect("utf-8"), "-o", out.to_str().expect("utf-8")],
        vec!["show", "--html", out.to_str().expect("utf-8"), missing.to_str().expect("utf-8")],
    ] {
        let o = crashsim(&args);
        assert_eq!(o.status.code(), Some(3), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
}

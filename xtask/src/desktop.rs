//! `cargo xtask desktop-check [--backend B] [--out PNG]`: runs the desktop example
//! (`examples/desktop`) under a virtual X server with the tiny fixture model, has it answer a
//! question about `tests/data/images/rocket.jpg` and screenshot its window, and checks that it
//! exited cleanly, printed an answer, and saved a picture that is not one flat colour. The
//! model runs on wgpu (lavapipe, where there is no GPU) and, if that fails, on the CPU; the
//! window is drawn with wgpu either way. The screenshot goes to `docs/desktop.png`.

use crate::{cargo, run};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const IMAGE: &str = "tests/data/images/rocket.jpg";
const PROMPT: &str = "What is in this picture?";
const MAX_TOKENS: &str = "24";
const TIMEOUT: Duration = Duration::from_secs(300);
const SCREEN: &str = "1280x800x24";

/// What one run of the app printed and saved.
struct Run {
    device: String,
    answer: String,
    stats: String,
    shot: String,
}

pub fn desktop_check(args: &[String]) -> bool {
    let mut backends = vec!["wgpu".to_string(), "cpu".to_string()];
    let mut out = PathBuf::from("docs/desktop.png");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (a.as_str(), it.next()) {
            ("--backend", Some(b)) => backends = vec![b.clone()],
            ("--out", Some(p)) => out = p.into(),
            _ => {
                eprintln!("usage: cargo xtask desktop-check [--backend auto|wgpu|cpu|cuda] [--out PNG]");
                return false;
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new(".")).to_path_buf();
    if !cargo(&["build", "--release", "-p", "lumen-desktop"], &[]) || !ensure_xvfb() {
        return false;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or(root.join("target"), PathBuf::from);
    let app = target.join("release/lumen-desktop");
    let scratch = target.join("desktop-check");
    let started = Instant::now();
    for backend in &backends {
        let shot = scratch.join(format!("desktop-{backend}.png"));
        match attempt(&root, &app, backend, &shot) {
            Ok(r) => {
                let out = root.join(&out);
                if let Err(e) = std::fs::copy(&shot, &out) {
                    eprintln!("desktop-check: cannot copy the screenshot to {}: {e}", out.display());
                    return false;
                }
                println!(
                    "desktop-check: ok in {:.0} s: --backend {backend} ({}); answer \"{}\"; {}; screenshot {} ({})",
                    started.elapsed().as_secs_f64(),
                    r.device,
                    r.answer,
                    r.stats,
                    out.display(),
                    r.shot
                );
                return true;
            }
            Err(e) => eprintln!("desktop-check: --backend {backend} failed: {e}"),
        }
    }
    println!("desktop-check: FAILED (backends tried: {})", backends.join(", "));
    false
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

/// Xvfb, installed with apt when missing and running as root.
fn ensure_xvfb() -> bool {
    if on_path("Xvfb") {
        return true;
    }
    eprintln!("desktop-check: Xvfb is missing; it comes with `apt-get install -y xvfb`");
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if root
        && (run("apt-get", &["install", "-y", "xvfb"])
            || (run("apt-get", &["update"]) && run("apt-get", &["install", "-y", "xvfb"])))
    {
        return on_path("Xvfb");
    }
    false
}

/// A virtual X server, stopped when dropped.
struct Xvfb {
    child: Child,
    display: String,
}

impl Xvfb {
    fn start() -> Result<Xvfb, String> {
        // `-displayfd 1`: Xvfb picks a free display and prints its number once it accepts clients.
        let mut child = Command::new("Xvfb")
            .args(["-displayfd", "1", "-screen", "0", SCREEN, "-nolisten", "tcp"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start Xvfb: {e}"))?;
        let mut line = String::new();
        let read = child.stdout.take().map(|o| BufReader::new(o).read_line(&mut line));
        let number = line.trim().to_string();
        let xvfb = Xvfb { child, display: format!(":{number}") };
        match read {
            Some(Ok(_)) if !number.is_empty() => Ok(xvfb),
            _ => Err("Xvfb did not start".into()),
        }
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Collects a child's output on a thread, echoing it as it comes.
fn collect(from: impl Read + Send + 'static, echo: &'static str) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            eprintln!("  {echo}{line}");
            all += &line;
            all.push('\n');
        }
        all
    })
}

fn attempt(root: &Path, app: &Path, backend: &str, shot: &Path) -> Result<Run, String> {
    let _ = std::fs::remove_file(shot);
    let xvfb = Xvfb::start()?;
    let runtime = std::env::temp_dir().join("lumen-desktop-check-xdg");
    let _ = std::fs::create_dir_all(&runtime);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700));
    }
    eprintln!(
        "$ DISPLAY={} {} --backend {backend} --image {IMAGE} --ask --screenshot {}",
        xvfb.display,
        app.display(),
        shot.display()
    );
    let mut cmd = Command::new(app);
    cmd.current_dir(root)
        .args(["--backend", backend, "--image", IMAGE, "--prompt", PROMPT, "--ask", "--max-tokens", MAX_TOKENS])
        .arg("--screenshot")
        .arg(shot)
        .env("DISPLAY", &xvfb.display)
        .env_remove("WAYLAND_DISPLAY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        cmd.env("XDG_RUNTIME_DIR", &runtime);
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", app.display()))?;
    let stdout = collect(child.stdout.take().ok_or("no stdout")?, "| ");
    let stderr = collect(child.stderr.take().ok_or("no stderr")?, "! ");
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {} s", TIMEOUT.as_secs()));
            }
        }
    };
    drop(xvfb);
    let out = stdout.join().unwrap_or_default();
    let errors = stderr.join().unwrap_or_default();
    if !status.success() {
        let why = errors.lines().filter_map(|l| l.strip_prefix("error: ")).next_back().unwrap_or("no error printed");
        return Err(format!("the app exited with {status} ({why})"));
    }
    let field = |key: &str| out.lines().find_map(|l| l.strip_prefix(key)).map(str::to_string);
    let answer = field("answer: ").unwrap_or_default();
    if answer.trim().is_empty() {
        return Err("no answer text (no non-empty `answer:` line)".into());
    }
    let shot = check_png(shot)?;
    Ok(Run { device: field("device: ").unwrap_or_default(), answer, stats: field("stats: ").unwrap_or_default(), shot })
}

/// The screenshot's size and colours; an error when it is missing or one flat colour.
fn check_png(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("no screenshot at {}: {e}", path.display()))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buf = vec![0; reader.output_buffer_size().ok_or("the screenshot is too large")?];
    let info = reader.next_frame(&mut buf).map_err(|e| format!("{}: {e}", path.display()))?;
    let channels = info.color_type.samples();
    let colours: HashSet<&[u8]> = buf[..info.line_size * info.height as usize].chunks_exact(channels).collect();
    if colours.len() < 16 {
        return Err(format!("the screenshot has {} colour(s): the window was not drawn", colours.len()));
    }
    Ok(format!("{}x{}, {} colours", info.width, info.height, colours.len()))
}

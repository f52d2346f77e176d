//! The window: top bar (model, backend, device, status, load progress), the image on the left,
//! the question and the streaming answer on the right, the answer's speed at the bottom.

use crate::picture::{save_png, Picture};
use crate::worker::{self, Event, Job, Notifier, Question, Stats};
use crate::Args;
use eframe::egui::{self, Color32, Key, Modifiers, RichText, TextureHandle, TextureOptions};
use lumen::{FinishReason, LoadProgress, Lumen, ModelSource};
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

const ERROR: Color32 = Color32::from_rgb(0xe0, 0x40, 0x40);

enum Model {
    Loading(Option<LoadProgress>),
    Ready(Lumen),
    /// Why not.
    Failed(String),
}

/// The `--screenshot` run's progress.
enum Shot {
    Off,
    /// Waiting for the answer (or a failure) before asking for the window's pixels.
    Armed(PathBuf),
    /// Pixels asked for.
    Requested(PathBuf),
    Done,
}

struct Shown {
    picture: Picture,
    texture: TextureHandle,
}

pub struct App {
    n: Notifier,
    events: Receiver<Event>,
    model_name: String,
    model: Model,
    /// The backend's reason, once chosen (while the model loads).
    chosen: Option<String>,
    /// The window's own renderer, for the tooltip.
    renderer: String,
    image_field: String,
    opening: bool,
    shown: Option<Shown>,
    question: String,
    max_tokens: usize,
    answer: String,
    job: Option<Job>,
    next_job: u64,
    stats: Option<Stats>,
    error: Option<String>,
    /// `--ask`: ask once the model and the image are there.
    auto_ask: bool,
    auto_asked: bool,
    /// Run by `--ask` or `--screenshot`, without a person.
    unattended: bool,
    /// Whether the unattended run went well, once it is over.
    outcome: Option<bool>,
    shot: Shot,
    status: Arc<Mutex<i32>>,
}

impl App {
    pub fn new(cc: &eframe::CreationContext<'_>, args: Args, status: Arc<Mutex<i32>>) -> App {
        let (n, events) = Notifier::new(cc.egui_ctx.clone());
        let renderer = cc.wgpu_render_state.as_ref().map_or("?".into(), |s| {
            let a = s.adapter.get_info();
            format!("window drawn with wgpu ({:?}) on {}", a.backend, a.name)
        });
        let source = ModelSource::dir(&args.model);
        let mut app = App {
            n: n.clone(),
            events,
            model_name: source.name(),
            model: Model::Loading(None),
            chosen: None,
            renderer,
            image_field: args.image.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            opening: false,
            shown: None,
            question: args.prompt,
            max_tokens: args.max_tokens,
            answer: String::new(),
            job: None,
            next_job: 0,
            stats: None,
            error: None,
            auto_ask: args.ask,
            auto_asked: false,
            unattended: args.ask || args.screenshot.is_some(),
            outcome: None,
            shot: args.screenshot.map_or(Shot::Off, Shot::Armed),
            status,
        };
        if let Err(e) = worker::load(source, args.backend, n) {
            app.model = Model::Failed(e.clone());
            app.fail(e);
        }
        if let Some(path) = args.image {
            app.open(path);
        }
        app
    }

    /// Shows an error in the window (and on stderr); an unattended run has failed.
    fn fail(&mut self, e: String) {
        eprintln!("error: {e}");
        self.error = Some(e);
        if self.unattended {
            self.outcome.get_or_insert(false);
        }
    }

    fn open(&mut self, path: PathBuf) {
        self.image_field = path.display().to_string();
        self.error = None;
        match worker::open(path, self.n.clone()) {
            Ok(()) => self.opening = true,
            Err(e) => self.fail(e),
        }
    }

    fn ask(&mut self) {
        let Model::Ready(lumen) = &self.model else { return };
        if self.job.is_some() || self.opening {
            return;
        }
        let text = self.question.trim().to_string();
        if text.is_empty() {
            return self.fail("type a question first".into());
        }
        let q =
            Question { image: self.shown.as_ref().map(|s| s.picture.bytes.clone()), text, max_tokens: self.max_tokens };
        self.next_job += 1;
        self.answer.clear();
        self.stats = None;
        self.error = None;
        match worker::ask(lumen.clone(), q, self.next_job, self.n.clone()) {
            Ok(job) => self.job = Some(job),
            Err(e) => self.fail(e),
        }
    }

    fn handle(&mut self, ctx: &egui::Context, event: Event) {
        match event {
            Event::Progress(p) => {
                if let LoadProgress::Reading { backend } = &p {
                    self.chosen = Some(backend.clone());
                }
                self.model = Model::Loading(Some(p));
            }
            Event::Loaded(Ok(lumen)) => {
                let i = lumen.info();
                println!("backend: {}", i.backend);
                println!("device: {} · {}", i.backend_kind, i.device);
                self.model = Model::Ready(lumen);
            }
            Event::Loaded(Err(e)) => {
                let e = format!("cannot load the model: {e}");
                self.model = Model::Failed(e.clone());
                self.fail(e);
            }
            Event::Opened(r) => {
                self.opening = false;
                match r {
                    Ok(picture) => {
                        let texture = ctx.load_texture("picture", picture.preview.clone(), TextureOptions::LINEAR);
                        self.shown = Some(Shown { picture, texture });
                    }
                    Err(e) => self.fail(e),
                }
            }
            Event::Piece { job, text } if self.job.as_ref().is_some_and(|j| j.id == job) => self.answer += &text,
            Event::Finished { job, result } if self.job.as_ref().is_some_and(|j| j.id == job) => {
                self.job = None;
                match result {
                    Ok(stats) => {
                        println!("answer: {}", one_line(&self.answer));
                        println!("stats: {}", stats_line(&stats));
                        self.stats = Some(stats);
                        if self.unattended {
                            self.outcome.get_or_insert(true);
                        }
                    }
                    Err(e) => self.fail(e),
                }
            }
            Event::Piece { .. } | Event::Finished { .. } => {} // of an answer no longer shown
            Event::Screenshot(image) => {
                let Shot::Requested(path) = std::mem::replace(&mut self.shot, Shot::Done) else { return };
                let saved = save_png(&image, &path);
                match &saved {
                    Ok(()) => println!("screenshot: {}", path.display()),
                    Err(e) => eprintln!("error: {e}"),
                }
                let ok = saved.is_ok() && self.outcome == Some(true);
                *self.status.lock().unwrap_or_else(|p| p.into_inner()) = if ok { 0 } else { 1 };
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            }
        }
    }

    fn top_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.heading("lumen");
            ui.label(RichText::new(&self.model_name).strong());
            ui.separator();
            match &self.model {
                Model::Ready(l) => {
                    let i = l.info();
                    ui.label(format!("{} · {}", i.backend_kind, i.device))
                        .on_hover_text(format!("{}\n{}\n{}", i.backend, i.describe, self.renderer));
                }
                Model::Loading(_) => {
                    ui.label(self.chosen.as_deref().unwrap_or("choosing a backend…")).on_hover_text(&self.renderer);
                }
                Model::Failed(_) => {
                    ui.label("no backend");
                }
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                let (text, busy) = self.status();
                ui.label(text);
                if busy {
                    ui.spinner();
                }
            });
        });
        if let Model::Loading(p) = &self.model {
            let (fraction, text) = match p {
                Some(LoadProgress::Uploading { done, total }) => {
                    (*done as f32 / (*total).max(1) as f32, format!("uploading weights {done}/{total}"))
                }
                Some(LoadProgress::Starting) => (1.0, "starting the engine".into()),
                Some(LoadProgress::Reading { .. }) => (0.0, "reading the checkpoint".into()),
                Some(LoadProgress::SelectingBackend) | None => (0.0, "choosing a backend".into()),
            };
            ui.add(egui::ProgressBar::new(fraction).text(text).animate(true));
        }
    }

    fn status(&self) -> (String, bool) {
        match &self.model {
            Model::Loading(_) => ("loading the model…".into(), true),
            Model::Failed(_) => ("the model did not load".into(), false),
            Model::Ready(_) if self.job.as_ref().is_some_and(Job::cancel_requested) => ("cancelling…".into(), true),
            Model::Ready(_) if self.job.is_some() => ("answering…".into(), true),
            Model::Ready(_) if self.opening => ("opening the image…".into(), true),
            Model::Ready(_) => ("ready".into(), false),
        }
    }

    fn image_side(&mut self, ui: &mut egui::Ui) {
        ui.label(RichText::new("Image").strong());
        let mut load = false;
        ui.horizontal(|ui| {
            let field = egui::TextEdit::singleline(&mut self.image_field).hint_text("path to a PNG or JPEG");
            let r = ui.add_sized([(ui.available_width() - 100.0).max(80.0), 20.0], field);
            load = r.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter));
            load |= ui.add_enabled(!self.opening, egui::Button::new("Load image")).clicked();
        });
        if load && !self.image_field.trim().is_empty() {
            self.open(PathBuf::from(self.image_field.trim()));
        }
        ui.add_space(6.0);
        match &self.shown {
            Some(s) => {
                let size = egui::vec2(ui.available_width(), (ui.available_height() - 24.0).max(64.0));
                ui.add(egui::Image::from_texture(&s.texture).max_size(size).corner_radius(4.0));
                let [w, h] = s.picture.size;
                ui.weak(format!("{} · {w}×{h}", s.picture.path.file_name().unwrap_or_default().to_string_lossy()));
            }
            None if self.opening => {
                ui.spinner();
            }
            None => {
                ui.weak("No image: type a path above, or drop a file on the window.");
            }
        }
    }

    fn question_side(&mut self, ui: &mut egui::Ui) {
        // Before the question box sees Ctrl+Enter as a new line.
        let shortcut = ui.input_mut(|i| i.consume_key(Modifiers::COMMAND, Key::Enter));
        ui.label(RichText::new("Question").strong());
        let edit = egui::TextEdit::multiline(&mut self.question).desired_rows(3).desired_width(f32::INFINITY);
        ui.add(edit);
        let ready = matches!(self.model, Model::Ready(_));
        let mut ask = false;
        ui.horizontal(|ui| {
            let can_ask = ready && self.job.is_none() && !self.opening;
            ask = ui.add_enabled(can_ask, egui::Button::new("Ask")).on_hover_text("Ctrl+Enter").clicked();
            let cancellable = self.job.as_ref().is_some_and(|j| !j.cancel_requested());
            if ui.add_enabled(cancellable, egui::Button::new("Cancel")).clicked() {
                if let Some(j) = &self.job {
                    j.cancel();
                }
            }
        });
        if ask || shortcut {
            self.ask();
        }
        ui.add_space(8.0);
        ui.label(RichText::new("Answer").strong());
        // The model's failure stays; an action's error goes with the next action.
        if let Model::Failed(e) = &self.model {
            if self.error.as_ref() != Some(e) {
                ui.colored_label(ERROR, format!("Error: {e}"));
            }
        }
        if let Some(e) = &self.error {
            ui.colored_label(ERROR, format!("Error: {e}"));
        }
        let frame = egui::Frame::new().fill(ui.visuals().extreme_bg_color).inner_margin(8.0).corner_radius(4.0);
        frame.show(ui, |ui| {
            egui::ScrollArea::vertical().stick_to_bottom(true).auto_shrink([false, false]).show(ui, |ui| {
                if self.answer.is_empty() && self.job.is_some() {
                    ui.weak("waiting for the first token…");
                }
                ui.label(RichText::new(&self.answer).size(16.0));
            });
        });
    }

    fn bottom_bar(&self, ui: &mut egui::Ui) {
        match &self.stats {
            Some(s) => ui.label(stats_line(s)),
            None => ui.weak("Ask about the image (Ctrl+Enter); the answer streams in, its speed shows here."),
        };
    }

    /// Files dropped on the window open; while one hovers, say so.
    fn drops(&mut self, ctx: &egui::Context) {
        let (hovering, dropped) = ctx
            .input(|i| (!i.raw.hovered_files.is_empty(), i.raw.dropped_files.first().map(|f| f.path().to_path_buf())));
        if let Some(path) = dropped {
            self.open(path);
        }
        if hovering {
            let painter = ctx.layer_painter(egui::LayerId::new(egui::Order::Foreground, egui::Id::unique("drop")));
            let rect = ctx.content_rect();
            painter.rect_filled(rect, 0.0, Color32::from_black_alpha(160));
            painter.text(
                rect.center(),
                egui::Align2::CENTER_CENTER,
                "Drop to open",
                egui::FontId::proportional(28.0),
                Color32::WHITE,
            );
        }
    }
}

/// The text with control characters (new lines among them) escaped, for one line of output.
fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { c.escape_debug().to_string() } else { c.to_string() }).collect()
}

fn stats_line(s: &Stats) -> String {
    let finish = match s.finish {
        FinishReason::Stop => "the model stopped",
        FinishReason::Length => "token limit reached",
        FinishReason::Cancelled => "cancelled",
    };
    let speed = s.tokens_per_second.map_or("–".into(), |t| format!("{t:.1}"));
    let first = s.first_token.map_or("–".into(), |d| format!("{:.2} s", d.as_secs_f64()));
    format!(
        "{} tokens · {speed} tokens/s · first token {first} · {:.2} s in all · prompt {} tokens · {finish}",
        s.tokens,
        s.elapsed.as_secs_f64(),
        s.prompt_tokens
    )
}

impl eframe::App for App {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        while let Ok(event) = self.events.try_recv() {
            self.handle(ctx, event);
        }
        let ready = matches!(self.model, Model::Ready(_)) && !self.opening;
        if ready && self.auto_ask && !self.auto_asked {
            self.auto_asked = true;
            if self.outcome.is_none() {
                self.ask();
            }
        }
        if ready && self.unattended && !self.auto_ask {
            // `--screenshot` alone: the window is complete once the model and image are in.
            self.outcome.get_or_insert(true);
        }
        if let (Shot::Armed(path), Some(_)) = (&self.shot, self.outcome) {
            // The state is final: the frame drawn now shows it.
            self.shot = Shot::Requested(path.clone());
            let n = self.n.clone();
            ctx.request_screenshot(move |image| {
                n.send(Event::Screenshot(image));
            });
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        egui::Panel::top("top").show(ui, |ui| {
            ui.add_space(4.0);
            self.top_bar(ui);
            ui.add_space(2.0);
        });
        egui::Panel::bottom("bottom").show(ui, |ui| {
            ui.add_space(4.0);
            self.bottom_bar(ui);
            ui.add_space(2.0);
        });
        egui::CentralPanel::default().show(ui, |ui| {
            ui.columns(2, |cols| {
                // Not the columns' justified layout: that would stretch the answer's words apart.
                let layout = egui::Layout::top_down(egui::Align::Min);
                cols[0].with_layout(layout, |ui| self.image_side(ui));
                cols[1].with_layout(layout, |ui| self.question_side(ui));
            });
        });
        let ctx = ui.ctx().clone();
        self.drops(&ctx);
    }

    fn on_exit(&mut self) {
        if let Some(j) = &self.job {
            j.cancel();
        }
    }
}

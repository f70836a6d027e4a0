//! Draws what the message board shows (the clock, or a message with its
//! sender and arrival time) into a 1-bit frame of the panel's size.

use crate::clock::Zone;
use chrono::DateTime;
use embedded_graphics::pixelcolor::BinaryColor;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{Line, PrimitiveStyle, Rectangle};
use embedded_graphics::text::renderer::TextRenderer;
use embedded_text::alignment::HorizontalAlignment;
use embedded_text::style::{HeightMode, TextBoxStyle, TextBoxStyleBuilder};
use embedded_text::TextBox;
use u8g2_fonts::types::{FontColor, HorizontalAlignment as HAlign, VerticalPosition};
use u8g2_fonts::{fonts, FontRenderer, U8g2TextStyle};

use crate::hardware::BitFrame;

/// What the board shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screen {
    /// The clock at this local time.
    Clock(DateTime<Zone>),
    /// A message.
    Message {
        /// The text, as received.
        text: String,
        /// Who sent it, if known.
        from: Option<String>,
        /// When it arrived (local time).
        at: DateTime<Zone>,
    },
}

/// The screens shown in the documentation (`docs/clock.png`,
/// `docs/message.png`, `docs/message-ru.png`).
pub fn samples() -> Vec<(&'static str, Screen)> {
    use chrono::TimeZone;
    // Built in, so the samples need no tzdata.
    let tz = crate::clock::resolve_zone(Some("Europe/Berlin")).unwrap_or_else(|_| Zone::utc());
    let at = |h, m| tz.with_ymd_and_hms(2026, 11, 24, h, m, 0).single();
    let mut out = Vec::new();
    if let (Some(clock), Some(msg)) = (at(19, 7), at(18, 42)) {
        out.push(("clock", Screen::Clock(clock)));
        out.push((
            "message",
            Screen::Message {
                text:
                    "Back at 8 — the soup is on the stove. Don't forget the plants on the balcony!"
                        .into(),
                from: Some("Jürgen".into()),
                at: msg.clone(),
            },
        ));
        out.push((
            "message-ru",
            Screen::Message {
                text: "Вернусь к восьми — суп на плите. Не забудь полить цветы на балконе!".into(),
                from: Some("Юля".into()),
                at: msg,
            },
        ));
    }
    out
}

/// The character drawn in place of one the font does not have.
pub(crate) const REPLACEMENT: char = '?';

/// A drawing surface over a [`BitFrame`]; `BinaryColor::On` is black.
pub(crate) struct Canvas {
    /// The frame drawn into.
    pub frame: BitFrame,
}

impl Canvas {
    /// A white canvas of the given size.
    pub(crate) fn new(width: u32, height: u32) -> Self {
        Canvas {
            frame: BitFrame {
                width,
                height,
                pixels: vec![false; (width * height) as usize],
            },
        }
    }
}

impl OriginDimensions for Canvas {
    fn size(&self) -> Size {
        Size::new(self.frame.width, self.frame.height)
    }
}

impl DrawTarget for Canvas {
    type Color = BinaryColor;
    type Error = std::convert::Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        let (w, h) = (self.frame.width as i32, self.frame.height as i32);
        for Pixel(p, c) in pixels {
            if p.x >= 0 && p.y >= 0 && p.x < w && p.y < h {
                self.frame.pixels[(p.y * w + p.x) as usize] = c.is_on();
            }
        }
        Ok(())
    }
}

/// Renders a screen into a frame of `width` × `height` pixels.
pub fn render(screen: &Screen, width: u32, height: u32) -> BitFrame {
    let mut canvas = Canvas::new(width, height);
    match screen {
        Screen::Clock(now) => draw_clock(&mut canvas, now),
        Screen::Message { text, from, at } => draw_message(&mut canvas, text, from.as_deref(), at),
    }
    canvas.frame
}

/// Big-digit fonts for the time, largest first.
fn time_font(i: usize) -> Option<FontRenderer> {
    Some(match i {
        0 => FontRenderer::new::<fonts::u8g2_font_logisoso92_tn>(),
        1 => FontRenderer::new::<fonts::u8g2_font_logisoso78_tn>(),
        2 => FontRenderer::new::<fonts::u8g2_font_logisoso62_tn>(),
        3 => FontRenderer::new::<fonts::u8g2_font_logisoso50_tn>(),
        4 => FontRenderer::new::<fonts::u8g2_font_logisoso38_tn>(),
        5 => FontRenderer::new::<fonts::u8g2_font_logisoso28_tn>(),
        6 => FontRenderer::new::<fonts::u8g2_font_logisoso20_tn>(),
        7 => FontRenderer::new::<fonts::u8g2_font_logisoso16_tn>(),
        _ => return None,
    })
}

/// How many text sizes each script has, largest first.
const TEXT_SIZES: usize = 6;

/// The writing a text is drawn in: the fonts that cover it. Helvetica has
/// Latin-1 and Latin Extended-A (German, Polish, French ...); Greek and
/// Cyrillic come from the X11 and Unifont families, with ASCII beside them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// Latin (Helvetica).
    Latin,
    /// Greek (X11 10x20, Unifont, cu12).
    Greek,
    /// Cyrillic (X11 10x20 to 5x8).
    Cyrillic,
}

impl Script {
    /// The script of most of `text`'s letters outside ASCII; Latin when it
    /// has no Greek or Cyrillic letters.
    pub fn of(text: &str) -> Script {
        let (mut greek, mut cyrillic) = (0usize, 0usize);
        for c in text.chars() {
            match c {
                '\u{0370}'..='\u{03FF}' | '\u{1F00}'..='\u{1FFF}' => greek += 1,
                '\u{0400}'..='\u{04FF}' => cyrillic += 1,
                _ => {}
            }
        }
        match (greek, cyrillic) {
            (0, 0) => Script::Latin,
            (g, c) if g > c => Script::Greek,
            _ => Script::Cyrillic,
        }
    }
}

fn text_renderer(script: Script, i: usize) -> FontRenderer {
    match (script, i) {
        (Script::Latin, 0) => FontRenderer::new::<fonts::u8g2_font_helvR24_te>(),
        (Script::Latin, 1) => FontRenderer::new::<fonts::u8g2_font_helvR18_te>(),
        (Script::Latin, 2) => FontRenderer::new::<fonts::u8g2_font_helvR14_te>(),
        (Script::Latin, 3) => FontRenderer::new::<fonts::u8g2_font_helvR12_te>(),
        (Script::Latin, 4) => FontRenderer::new::<fonts::u8g2_font_helvR10_te>(),
        (Script::Latin, _) => FontRenderer::new::<fonts::u8g2_font_helvR08_te>(),
        (Script::Greek, 0 | 1) => FontRenderer::new::<fonts::u8g2_font_10x20_t_greek>(),
        (Script::Greek, 2 | 3) => FontRenderer::new::<fonts::u8g2_font_unifont_t_greek>(),
        (Script::Greek, _) => FontRenderer::new::<fonts::u8g2_font_cu12_t_greek>(),
        (Script::Cyrillic, 0) => FontRenderer::new::<fonts::u8g2_font_10x20_t_cyrillic>(),
        (Script::Cyrillic, 1) => FontRenderer::new::<fonts::u8g2_font_9x15_t_cyrillic>(),
        (Script::Cyrillic, 2) => FontRenderer::new::<fonts::u8g2_font_8x13_t_cyrillic>(),
        (Script::Cyrillic, 3) => FontRenderer::new::<fonts::u8g2_font_7x13_t_cyrillic>(),
        (Script::Cyrillic, 4) => FontRenderer::new::<fonts::u8g2_font_6x12_t_cyrillic>(),
        (Script::Cyrillic, _) => FontRenderer::new::<fonts::u8g2_font_5x8_t_cyrillic>(),
    }
}

fn text_style(script: Script, i: usize) -> U8g2TextStyle<BinaryColor> {
    let on = BinaryColor::On;
    match (script, i) {
        (Script::Latin, 0) => U8g2TextStyle::new(fonts::u8g2_font_helvR24_te, on),
        (Script::Latin, 1) => U8g2TextStyle::new(fonts::u8g2_font_helvR18_te, on),
        (Script::Latin, 2) => U8g2TextStyle::new(fonts::u8g2_font_helvR14_te, on),
        (Script::Latin, 3) => U8g2TextStyle::new(fonts::u8g2_font_helvR12_te, on),
        (Script::Latin, 4) => U8g2TextStyle::new(fonts::u8g2_font_helvR10_te, on),
        (Script::Latin, _) => U8g2TextStyle::new(fonts::u8g2_font_helvR08_te, on),
        (Script::Greek, 0 | 1) => U8g2TextStyle::new(fonts::u8g2_font_10x20_t_greek, on),
        (Script::Greek, 2 | 3) => U8g2TextStyle::new(fonts::u8g2_font_unifont_t_greek, on),
        (Script::Greek, _) => U8g2TextStyle::new(fonts::u8g2_font_cu12_t_greek, on),
        (Script::Cyrillic, 0) => U8g2TextStyle::new(fonts::u8g2_font_10x20_t_cyrillic, on),
        (Script::Cyrillic, 1) => U8g2TextStyle::new(fonts::u8g2_font_9x15_t_cyrillic, on),
        (Script::Cyrillic, 2) => U8g2TextStyle::new(fonts::u8g2_font_8x13_t_cyrillic, on),
        (Script::Cyrillic, 3) => U8g2TextStyle::new(fonts::u8g2_font_7x13_t_cyrillic, on),
        (Script::Cyrillic, 4) => U8g2TextStyle::new(fonts::u8g2_font_6x12_t_cyrillic, on),
        (Script::Cyrillic, _) => U8g2TextStyle::new(fonts::u8g2_font_5x8_t_cyrillic, on),
    }
}

fn width_of(font: &FontRenderer, text: &str) -> Option<u32> {
    font.get_rendered_dimensions(text, Point::zero(), VerticalPosition::Baseline)
        .ok()
        .and_then(|d| d.bounding_box)
        .map(|b| b.size.width)
}

fn height_of(font: &FontRenderer, text: &str) -> Option<u32> {
    font.get_rendered_dimensions(text, Point::zero(), VerticalPosition::Baseline)
        .ok()
        .and_then(|d| d.bounding_box)
        .map(|b| b.size.height)
}

/// Draws one line centred at `center_x` with its baseline at `y`, in the
/// largest of the fonts that fits `max_width`.
fn centred_line(
    canvas: &mut Canvas,
    text: &str,
    fonts: impl Iterator<Item = FontRenderer>,
    max_width: u32,
    center_x: i32,
    baseline_y: i32,
) {
    let mut chosen = None;
    for f in fonts {
        let fits = width_of(&f, text).is_some_and(|w| w <= max_width);
        chosen = Some(f);
        if fits {
            break;
        }
    }
    if let Some(f) = chosen {
        let _ = f.render_aligned(
            text,
            Point::new(center_x, baseline_y),
            VerticalPosition::Baseline,
            HAlign::Center,
            FontColor::Transparent(BinaryColor::On),
            canvas,
        );
    }
}

fn draw_clock(canvas: &mut Canvas, now: &DateTime<Zone>) {
    let (w, h) = (canvas.frame.width, canvas.frame.height);
    let time = now.format("%H:%M").to_string();
    // The largest time font that fits 92 % of the width and 60 % of the height.
    let mut font_i = 0;
    while let Some(f) = time_font(font_i) {
        let fits_w = width_of(&f, &time).is_some_and(|tw| tw * 100 <= w * 92);
        let fits_h = height_of(&f, &time).is_some_and(|th| th * 100 <= h * 60);
        if fits_w && fits_h || time_font(font_i + 1).is_none() {
            break;
        }
        font_i += 1;
    }
    let time_h = time_font(font_i)
        .and_then(|f| height_of(&f, &time))
        .unwrap_or(0) as i32;
    let top_margin = (h as i32 * 8) / 100;
    let time_baseline = top_margin + time_h;
    if let Some(f) = time_font(font_i) {
        let _ = f.render_aligned(
            time.as_str(),
            Point::new(w as i32 / 2, time_baseline),
            VerticalPosition::Baseline,
            HAlign::Center,
            FontColor::Transparent(BinaryColor::On),
            canvas,
        );
    }
    let date = now.format("%A, %-d %B %Y").to_string();
    let date_baseline = time_baseline + (h as i32 - time_baseline) / 2 + 6;
    centred_line(
        canvas,
        &date,
        (1..TEXT_SIZES).map(|i| text_renderer(Script::Latin, i)),
        w * 94 / 100,
        w as i32 / 2,
        date_baseline,
    );
    let zone = now.format("%Z").to_string();
    centred_line(
        canvas,
        &zone,
        std::iter::once(text_renderer(Script::Latin, TEXT_SIZES - 1)),
        w,
        w as i32 / 2,
        h as i32 - 4,
    );
}

/// Replaces characters the fonts of `script` cannot draw with
/// [`REPLACEMENT`]; drops carriage returns and turns tabs into spaces.
pub(crate) fn printable(text: &str, script: Script) -> String {
    let probe = text_renderer(script, TEXT_SIZES - 1);
    text.chars()
        .filter(|&c| c != '\r')
        .map(|c| match c {
            '\t' => ' ',
            '\n' => '\n',
            c if c.is_control() => REPLACEMENT,
            c if has_glyph(&probe, c) => c,
            c => match ascii_stand_in(c) {
                Some(s) if has_glyph(&probe, s) => s,
                _ => REPLACEMENT,
            },
        })
        .collect()
}

fn has_glyph(font: &FontRenderer, c: char) -> bool {
    font.get_rendered_dimensions(c, Point::zero(), VerticalPosition::Baseline)
        .is_ok()
}

/// Typographic characters phones insert (smart quotes, dashes) and their
/// plain stand-ins, for fonts that lack them.
fn ascii_stand_in(c: char) -> Option<char> {
    Some(match c {
        '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{2032}' => '\'',
        '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{2033}' => '"',
        '\u{2010}' | '\u{2011}' | '\u{2012}' | '\u{2013}' | '\u{2014}' | '\u{2212}' => '-',
        '\u{2022}' | '\u{2027}' => '\u{B7}',
        '\u{00A0}' | '\u{2002}'..='\u{200A}' | '\u{202F}' => ' ',
        _ => return None,
    })
}

fn box_style() -> TextBoxStyle {
    TextBoxStyleBuilder::new()
        .alignment(HorizontalAlignment::Left)
        .height_mode(HeightMode::Exact(
            embedded_text::style::VerticalOverdraw::FullRowsOnly,
        ))
        .build()
}

/// The text as it will be drawn in `area`: the largest font in which it
/// fits, or the smallest with the text cut and an ellipsis.
pub(crate) fn fit_text(text: &str, area: Size, script: Script) -> (usize, String) {
    let style = box_style();
    let fits = |i: usize, t: &str| {
        style.measure_text_height(&text_style(script, i), t, area.width) <= area.height
    };
    for i in 0..TEXT_SIZES {
        if fits(i, text) {
            return (i, text.to_string());
        }
    }
    let smallest = TEXT_SIZES - 1;
    let ellipsis = if text_renderer(script, smallest)
        .get_rendered_dimensions('…', Point::zero(), VerticalPosition::Baseline)
        .is_ok()
    {
        "…"
    } else {
        "..."
    };
    // The longest prefix (in characters) that fits with the ellipsis.
    let chars: Vec<char> = text.chars().collect();
    let (mut lo, mut hi) = (0usize, chars.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        let candidate: String = chars[..mid]
            .iter()
            .collect::<String>()
            .trim_end()
            .to_string()
            + ellipsis;
        if fits(smallest, &candidate) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let cut: String = chars[..lo]
        .iter()
        .collect::<String>()
        .trim_end()
        .to_string()
        + ellipsis;
    (smallest, cut)
}

/// Height of the footer band (sender and time) for a panel of height `h`.
fn footer_height(h: u32) -> u32 {
    (h / 8).clamp(12, 24)
}

fn draw_message(canvas: &mut Canvas, text: &str, from: Option<&str>, at: &DateTime<Zone>) {
    let (w, h) = (canvas.frame.width, canvas.frame.height);
    let margin = 4u32;
    let footer = footer_height(h);
    let area = Rectangle::new(
        Point::new(margin as i32, margin as i32),
        Size::new(
            w.saturating_sub(2 * margin),
            h.saturating_sub(footer + 2 * margin),
        ),
    );
    // A panel too small for one line of the smallest font shows the footer only.
    let script = Script::of(text);
    if area.size.height >= text_style(script, TEXT_SIZES - 1).line_height() && area.size.width >= 16
    {
        let (font_i, shown) = fit_text(&printable(text, script), area.size, script);
        let _ = TextBox::with_textbox_style(&shown, area, text_style(script, font_i), box_style())
            .draw(canvas);
    }

    // Footer: a rule, then "sender · HH:MM, Tue 24 Nov".
    let rule_y = h.saturating_sub(footer) as i32;
    let _ = Line::new(Point::new(0, rule_y), Point::new(w as i32 - 1, rule_y))
        .into_styled(PrimitiveStyle::with_stroke(BinaryColor::On, 1))
        .draw(canvas);
    let when = at.format("%H:%M, %a %-d %b").to_string();
    let script = from.map_or(Script::Latin, Script::of);
    let small = text_renderer(script, if footer >= 18 { 4 } else { TEXT_SIZES - 1 });
    // Not every script's font has the middle dot.
    let dot = if has_glyph(&small, '·') { "·" } else { "-" };
    let label = match from {
        Some(f) if !f.trim().is_empty() => {
            format!("{} {dot} {when}", printable(f.trim(), script))
        }
        _ => when,
    };
    let _ = small.render_aligned(
        label.as_str(),
        Point::new(margin as i32, h as i32 - (footer as i32 / 2)),
        VerticalPosition::Center,
        HAlign::Left,
        FontColor::Transparent(BinaryColor::On),
        canvas,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at() -> DateTime<Zone> {
        crate::clock::resolve_zone(Some("Europe/Berlin"))
            .unwrap()
            .with_ymd_and_hms(2026, 11, 24, 19, 7, 0)
            .unwrap()
    }

    fn ink(f: &BitFrame, x0: u32, y0: u32, x1: u32, y1: u32) -> usize {
        let mut n = 0;
        for y in y0..y1 {
            for x in x0..x1 {
                n += f.pixels[(y * f.width + x) as usize] as usize;
            }
        }
        n
    }

    #[test]
    fn clock_draws_a_large_time_in_the_upper_part() {
        let f = render(&Screen::Clock(at()), 264, 176);
        assert_eq!((f.width, f.height, f.pixels.len()), (264, 176, 264 * 176));
        let top = ink(&f, 0, 0, 264, 110);
        let bottom = ink(&f, 0, 110, 264, 176);
        assert!(top > 2000, "big digits: {top} black pixels");
        assert!(bottom > 100, "date line: {bottom}");
        // Different minutes give different frames.
        let g = render(
            &Screen::Clock(at() + chrono::TimeDelta::minutes(1)),
            264,
            176,
        );
        assert_ne!(f, g);
    }

    #[test]
    fn short_messages_get_a_big_font_and_long_ones_a_small_one() {
        let area = Size::new(256, 140);
        assert_eq!(fit_text("Hi!", area, Script::Latin).0, 0);
        let long = "word ".repeat(60);
        let (i, shown) = fit_text(&long, area, Script::Latin);
        assert!(i > 2, "font {i}");
        assert_eq!(shown, long);
    }

    #[test]
    fn over_long_text_is_cut_with_an_ellipsis() {
        let area = Size::new(256, 140);
        let text = "lorem ipsum dolor ".repeat(200);
        let (i, shown) = fit_text(&text, area, Script::Latin);
        assert_eq!(i, TEXT_SIZES - 1);
        assert!(shown.ends_with('…') || shown.ends_with("..."), "{shown}");
        assert!(shown.chars().count() < text.chars().count());
        assert!(
            shown.chars().count() > 100,
            "still uses the space: {}",
            shown.len()
        );
    }

    #[test]
    fn unknown_characters_become_a_visible_replacement() {
        let latin = |t: &str| printable(t, Script::Latin);
        assert_eq!(latin("a😀b\tc\r\nd\u{7}"), "a?b c\nd?");
        assert_eq!(latin("Grüße, Łódź"), "Grüße, Łódź");
        assert_eq!(
            latin("It\u{2019}s \u{201C}fine\u{201D} \u{2014} ok"),
            "It's \"fine\" - ok"
        );
        assert_eq!(latin("Привет"), "??????", "Cyrillic is not Helvetica's");
    }

    #[test]
    fn german_polish_greek_and_russian_are_drawn_not_replaced() {
        for (text, script) in [
            (
                "Bin um 8 zurück — die Suppe steht auf dem Herd. Grüße, Jürgen",
                Script::Latin,
            ),
            (
                "Wracam o 8. Zupa stoi na kuchence. Pozdrawiam, Łukasz, Źdźbło",
                Script::Latin,
            ),
            (
                "Επιστρέφω στις 8 — η σούπα είναι στην κουζίνα. Φιλιά, Γιώργος",
                Script::Greek,
            ),
            (
                "Вернусь в 8 — суп на плите. Не забудь полить цветы! Юля, Ёж",
                Script::Cyrillic,
            ),
        ] {
            assert_eq!(Script::of(text), script, "{text}");
            let shown = printable(text, script).replace('—', "-");
            let want: String = text
                .chars()
                .map(|c| if c == '—' { '-' } else { c })
                .collect();
            assert_eq!(shown, want, "every letter has a glyph: {text}");
            // Drawn: ink in the text area, as large as fits.
            let f = render(
                &Screen::Message {
                    text: text.into(),
                    from: Some("Юля".into()),
                    at: at(),
                },
                264,
                176,
            );
            assert!(ink(&f, 0, 0, 264, 100) > 500, "{text}");
        }
    }

    #[test]
    fn the_samples_under_docs_are_what_the_renderer_draws() {
        for (name, screen) in samples() {
            let committed =
                std::fs::read(format!("{}/docs/{name}.png", env!("CARGO_MANIFEST_DIR")))
                    .unwrap_or_else(|e| panic!("docs/{name}.png: {e}"));
            let now = crate::hardware::png_file::encode(&render(&screen, 264, 176)).unwrap();
            assert!(
                committed == now,
                "docs/{name}.png is stale: run `cargo run --example render_samples`"
            );
        }
    }

    #[test]
    fn odd_sizes_and_odd_texts_never_panic() {
        let texts = [
            "x".to_string(),
            "\n\n\n\n".to_string(),
            "a".repeat(1200),
            "word ".repeat(300),
            "😀".repeat(50),
            "line\n".repeat(200),
            " ".to_string(),
        ];
        for (w, h) in [(8, 8), (16, 8), (64, 32), (128, 96), (264, 176), (800, 480)] {
            for t in &texts {
                let s = Screen::Message {
                    text: t.clone(),
                    from: Some(t.clone()),
                    at: at(),
                };
                let f = render(&s, w, h);
                assert_eq!(f.pixels.len(), (w * h) as usize);
            }
            let _ = render(&Screen::Clock(at()), w, h);
        }
    }

    #[test]
    fn message_has_text_and_a_footer() {
        let s = Screen::Message {
            text: "Dinner at 7".into(),
            from: Some("john".into()),
            at: at(),
        };
        let f = render(&s, 264, 176);
        let footer = footer_height(176);
        assert!(ink(&f, 0, 0, 264, 176 - footer) > 300, "text drawn");
        // The rule across the full width.
        assert_eq!(ink(&f, 0, 176 - footer, 264, 176 - footer + 1), 264);
        assert!(
            ink(&f, 0, 176 - footer + 1, 264, 176) > 50,
            "footer text drawn"
        );
    }
}

//! The font the examples' `--plot` charts draw their text with: plotters' pure-Rust renderer
//! takes it from a file, so it is looked for where the usual systems keep DejaVu Sans or Arial.

/// Registers the first font found as plotters' "sans-serif", or says what to install.
pub fn register() -> Result<(), Box<dyn std::error::Error>> {
    let fonts = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/Library/Fonts/Arial.ttf",
    ];
    let font = fonts
        .iter()
        .find_map(|f| std::fs::read(f).ok())
        .ok_or("--plot needs a font: install fonts-dejavu-core")?;
    let style = plotters::style::FontStyle::Normal;
    plotters::style::register_font("sans-serif", style, Box::leak(font.into_boxed_slice()))
        .map_err(|_| "--plot: the font file is not a usable TrueType font")?;
    Ok(())
}

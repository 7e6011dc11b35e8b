//! The font the examples' `--plot` charts draw their text with. plotters' pure-Rust renderer
//! takes a font file, and systems keep theirs in different places (or have none), so DejaVu
//! Sans ships with the examples (`DejaVuSans.ttf`, unmodified, under the Bitstream Vera
//! licence in `DejaVuSans-LICENSE`): plots work on any OS.

/// DejaVu Sans 2.37, as Debian's fonts-dejavu-core ships it.
const DEJAVU_SANS: &[u8] = include_bytes!("DejaVuSans.ttf");

/// Registers DejaVu Sans as plotters' "sans-serif".
pub fn register() -> Result<(), Box<dyn std::error::Error>> {
    plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, DEJAVU_SANS)
        .map_err(|_| "--plot: the bundled font is not a usable TrueType font")?;
    Ok(())
}

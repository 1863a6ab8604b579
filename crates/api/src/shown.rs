//! Values and foreign messages cut to a readable length before they reach an error: a 5 MB
//! `endpointName` was echoed whole, in every error line and condition that named it.

/// Characters of a value shown before it is cut.
const SHOWN_CHARS: usize = 64;
/// Characters of a whole foreign message (a YAML or type error) shown before it is cut.
const MESSAGE_CHARS: usize = 400;

/// `value` quoted as in the rest of the message, cut after 64 characters with its length said.
pub fn quoted(value: &str) -> String {
    let length = value.chars().count();
    if length <= SHOWN_CHARS {
        return format!("{value:?}");
    }
    let start: String = value.chars().take(SHOWN_CHARS).collect();
    format!("{start:?}… ({length} characters)")
}

/// A message written by a parser: every word longer than 64 characters cut (values echoed
/// inside it), and the whole cut after 400.
pub fn shortened(message: &str) -> String {
    let words: Vec<String> = message
        .split(' ')
        .map(|word| {
            let length = word.chars().count();
            if length <= SHOWN_CHARS {
                word.to_string()
            } else {
                let start: String = word.chars().take(SHOWN_CHARS).collect();
                format!("{start}…({length} characters)")
            }
        })
        .collect();
    let joined = words.join(" ");
    if joined.chars().count() <= MESSAGE_CHARS {
        return joined;
    }
    let start: String = joined.chars().take(MESSAGE_CHARS).collect();
    format!("{start}… (cut)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_shown_whole_and_long_ones_cut_with_their_length() {
        assert_eq!(quoted("sdxl-async"), "\"sdxl-async\"");
        let long = "x".repeat(5_000_000);
        let shown = quoted(&long);
        assert_eq!(
            shown,
            format!("\"{}\"… (5000000 characters)", "x".repeat(64))
        );
    }

    #[test]
    fn a_foreign_message_keeps_its_words_and_loses_the_echoed_value() {
        let message = format!(
            "invalid type: string \"{}\", expected i32",
            "x".repeat(10_000)
        );
        let shown = shortened(&message);
        assert!(shown.starts_with("invalid type: string \"xxxx"), "{shown}");
        assert!(
            shown.ends_with("…(10003 characters) expected i32"),
            "{shown}"
        );
        let many = "word ".repeat(1_000);
        assert!(shortened(&many).chars().count() <= 400 + "… (cut)".len());
    }
}

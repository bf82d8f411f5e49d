//! Inputs longer than a model takes, embedded in parts: cut at the break
//! nearest the middle (again while still too long), the chunk's vector the
//! length-weighted mean of its parts' vectors at unit length.

/// `text` cut in two at the break nearest its middle (paragraph, line,
/// sentence, then word; else the character boundary nearest the middle), for
/// an input the model calls too long. None if there is nothing to cut.
pub fn halves(text: &str) -> Option<(&str, &str)> {
    // Fewer than two characters: nothing to cut.
    text.chars().nth(1)?;
    let mid = text.len() / 2;
    let window = text.len() / 4;
    for sep in ["\n\n", "\n", ". ", "。", "! ", "? ", " "] {
        let best = text
            .match_indices(sep)
            .map(|(i, _)| i + sep.len())
            .filter(|&i| i > 0 && i < text.len() && i.abs_diff(mid) <= window)
            .min_by_key(|&i| i.abs_diff(mid));
        if let Some(i) = best {
            return Some(text.split_at(i));
        }
    }
    let i = (mid..text.len())
        .find(|&i| text.is_char_boundary(i))
        .filter(|&i| i > 0 && i < text.len())
        .or_else(|| (1..mid).rev().find(|&i| text.is_char_boundary(i)))?;
    Some(text.split_at(i))
}

#[cfg(test)]
mod tests {
    use super::halves;

    #[test]
    fn cuts_at_the_break_nearest_the_middle_and_never_inside_a_character() {
        let t = "First paragraph here.\n\nSecond paragraph, a bit longer.";
        let (a, b) = halves(t).unwrap();
        assert_eq!(format!("{a}{b}"), t);
        assert!(a.ends_with("\n\n"), "{a:?}");
        let zh = "向量检索是检索增强生成系统的核心组件";
        let (a, b) = halves(zh).unwrap();
        assert_eq!(format!("{a}{b}"), zh);
        assert!(!a.is_empty() && !b.is_empty());
        assert!(halves("x").is_none());
        assert_eq!(halves("ab"), Some(("a", "b")));
    }
}

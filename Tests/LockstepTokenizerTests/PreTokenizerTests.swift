import Testing
@testable import LockstepTokenizer

/// GPT-2's pattern, case by case, written from the regex by hand (`Ġ`-free: these are the raw pieces).
@Suite struct PreTokenizerTests {
    @Test(arguments: [
        // Words take one leading space; a run of spaces before a word gives its last space to the word.
        ("Hello world", ["Hello", " world"]),
        ("a  b", ["a", " ", " b"]),
        ("a   b", ["a", "  ", " b"]),
        // Whitespace at the end stays whole; at the start, all but the last space.
        ("end   ", ["end", "   "]),
        ("  lead", [" ", " lead"]),
        (" ", [" "]),
        // Only U+0020 can prefix a word: a tab before a word is its own token, and so is a lone newline.
        ("a\tb", ["a", "\t", "b"]),
        ("a\t\tb", ["a", "\t", "\t", "b"]),
        ("a\n\nb", ["a", "\n", "\n", "b"]),
        ("a\n b", ["a", "\n", " b"]),
        ("a \n", ["a", " \n"]),
        ("x\u{00A0}y", ["x", "\u{00A0}", "y"]),
        // Contractions (lower case, ASCII apostrophe) split off; other apostrophes join symbol runs.
        ("don't I'll we've they're she'd I'm it's", ["don", "'t", " I", "'ll", " we", "'ve", " they", "'re", " she", "'d", " I", "'m", " it", "'s"]),
        ("IT'S", ["IT", "'", "S"]),
        ("'sa", ["'s", "a"]),
        ("foxes' den", ["foxes", "'", " den"]),
        ("?'s", ["?'", "s"]),
        // Letters, numbers and other symbols form separate runs, each with an optional space.
        ("3.14159, 1,000", ["3", ".", "14159", ",", " 1", ",", "000"]),
        ("abc123def", ["abc", "123", "def"]),
        ("!!! ???", ["!!!", " ???"]),
        ("x²½", ["x", "²½"]),
        ("café naïve", ["café", " naïve"]),
        ("中文 字符", ["中文", " 字符"]),
        ("emoji 🙂🚀 ok", ["emoji", " 🙂🚀", " ok"]),
        ("", []),
    ])
    func splitsLikeGPT2(text: String, pieces: [String]) {
        #expect(PreTokenizer.pieces(text) == pieces)
    }
}

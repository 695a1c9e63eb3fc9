package ocr

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"unicode/utf8"
)

// words are the vocabulary of RandomText: common English words, some longer ones and names.
var words = strings.Fields(`
the of and to in is was for on that with as at by from this have are not be or it an
his her their they we you our your can will would there which one all been more when
who what time year people way day man woman child world life hand part place case week
company system program question work government number night point home water room mother
area money story fact month lot right study book eye job word business issue side kind head
house service friend father power hour game line end member law car city community name
president team minute idea kid body information back parent face others level office door
health person art war history party result change morning reason research girl guy moment
air teacher force education foot boy age policy process music market sense nation plan
college interest death experience effect use class control care field development role
effort rate heart drug show leader light voice wife police mind price report decision son
view relationship town road arm difference value building action model season society tax
director position player record paper space ground form event official matter center couple
site project activity star table need court oil situation cost industry figure street image
phone data picture practice piece land product doctor wall patient worker news test movie
north love support technology step baby computer type attention film tree source organization
hair window evidence population truth song camera account quality analysis performance
garden yellow quick brown jumps over lazy dog river mountain valley summer winter autumn
spring bridge station airport ticket coffee breakfast dinner library museum theatre hospital
invoice receipt total amount balance payment delivery address customer order shipping
London Paris Berlin Madrid Tokyo Boston Chicago Sydney Toronto Vienna Oslo Dublin
Alice Robert Maria James Linda Thomas Sarah Daniel Emma Oliver Sophie Lucas
`)

// RandomText returns a line of between minLen and maxLen runes (inclusive; minLen >= 1) made
// of English words, numbers (integers, decimals, dates, prices, percentages, times, phone
// numbers) and punctuation, in one of four cases (lower, Sentence, Title, UPPER). All its
// characters are printable ASCII, which ppocr_keys_v1.txt holds (space is the recogniser's
// last class). Words and single spaces only: no leading, trailing or double spaces.
func RandomText(rng *rand.Rand, minLen, maxLen int) string {
	minLen = max(minLen, 1)
	maxLen = max(maxLen, minLen)
	target := minLen + rng.IntN(maxLen-minLen+1)
	caseStyle := rng.IntN(20) // 0-5 lower, 6-11 sentence, 12-16 title, 17-19 upper
	var b strings.Builder
	first := true
	for utf8.RuneCountInString(b.String()) < target {
		tok := randomToken(rng)
		switch {
		case caseStyle >= 17:
			tok = strings.ToUpper(tok)
		case caseStyle >= 12 || (caseStyle >= 6 && first):
			tok = capitalize(tok)
		}
		if !first {
			b.WriteByte(' ')
		}
		b.WriteString(tok)
		first = false
	}
	s := b.String()
	if len(s) > maxLen { // ASCII only: bytes are runes
		// Cut at the last space that keeps at least minLen characters, else mid-word.
		cut := strings.LastIndexByte(s[:maxLen+1], ' ')
		if cut < minLen {
			cut = maxLen
		}
		s = strings.TrimRight(s[:cut], " ")
	}
	for len(s) < minLen {
		s += string(rune('a' + rng.IntN(26)))
	}
	return s
}

// randomToken is a word with optional punctuation, or a number in one of several forms.
func randomToken(rng *rand.Rand) string {
	switch r := rng.IntN(100); {
	case r < 72:
		w := words[rng.IntN(len(words))]
		switch p := rng.IntN(40); {
		case p < 4:
			return w + ","
		case p < 6:
			return w + "."
		case p == 6:
			return w + ":"
		case p == 7:
			return w + ";"
		case p == 8:
			return w + "!"
		case p == 9:
			return w + "?"
		case p == 10:
			return "(" + w + ")"
		case p == 11:
			return "\"" + w + "\""
		case p == 12:
			return w + "'s"
		case p == 13:
			return w + "-" + words[rng.IntN(len(words))]
		case p == 14:
			return w + "/" + words[rng.IntN(len(words))]
		}
		return w
	case r < 80:
		return strconv.Itoa(rng.IntN(1000))
	case r < 83:
		return strconv.Itoa(rng.IntN(100)) + "." + strconv.Itoa(rng.IntN(10))
	case r < 86:
		return "$" + strconv.Itoa(1+rng.IntN(500)) + "." + twoDigits(rng.IntN(100))
	case r < 89:
		return strconv.Itoa(rng.IntN(101)) + "%"
	case r < 92:
		return strconv.Itoa(1990+rng.IntN(40)) + "-" + twoDigits(1+rng.IntN(12)) + "-" + twoDigits(1+rng.IntN(28))
	case r < 95:
		return twoDigits(rng.IntN(24)) + ":" + twoDigits(rng.IntN(60))
	case r < 97:
		return "(" + strconv.Itoa(200+rng.IntN(800)) + ") " + strconv.Itoa(100+rng.IntN(900)) + "-" + strconv.Itoa(1000+rng.IntN(9000))
	case r < 98:
		return "#" + strconv.Itoa(rng.IntN(100))
	case r < 99:
		return "&"
	}
	return "No." + strconv.Itoa(1+rng.IntN(99))
}

func twoDigits(n int) string {
	if n < 10 {
		return "0" + strconv.Itoa(n)
	}
	return strconv.Itoa(n)
}

// capitalize upper-cases the first letter of an ASCII token (after any leading punctuation).
func capitalize(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'a' && c <= 'z' {
			return s[:i] + string(c-'a'+'A') + s[i+1:]
		} else if c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			return s
		}
	}
	return s
}

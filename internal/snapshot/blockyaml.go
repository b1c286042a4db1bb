package snapshot

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// blockYAMLToJSON converts the block-style YAML that kubectl, yaml.Marshal
// and most hand-written manifests use straight to JSON, about ten times
// faster than a full YAML parser (which dominated loading a large dump).
// It knows only a subset: block mappings and sequences indented by spaces,
// plain scalars whose type is unambiguous, quoted scalars with simple
// escapes, `{}`, `[]` and literal blocks (`|`, `|-`). On anything else
// (flow collections, anchors, tags, folded or multi-line plain scalars,
// YAML 1.1 words like yes/on, numbers other than plain integers) it returns
// ok == false and the caller uses the full parser, so the result is always
// what sigs.k8s.io/yaml would have produced.
func blockYAMLToJSON(doc []byte) (js []byte, ok bool) {
	js, _, ok = blockYAMLToJSONTop(doc)
	return js, ok
}

// topLevel is what the fast path saw of a document's top-level mapping:
// enough to route it without decoding the JSON again.
type topLevel struct {
	env      envelope
	hasItems bool
}

// blockYAMLToJSONTop is blockYAMLToJSON that also returns the top-level
// apiVersion and kind.
func blockYAMLToJSONTop(doc []byte) (js []byte, top topLevel, ok bool) {
	if !printable(doc) {
		return nil, top, false
	}
	p := blockParser{top: &top}
	for _, raw := range bytes.Split(doc, []byte("\n")) {
		raw = bytes.TrimSuffix(raw, []byte("\r"))
		indent := 0
		for indent < len(raw) && raw[indent] == ' ' {
			indent++
		}
		content := raw[indent:]
		p.lines = append(p.lines, blockLine{indent: indent, content: content, raw: raw})
	}
	p.skipBlank()
	if p.i == len(p.lines) {
		return nil, top, false // empty: the caller knows what to do
	}
	out := make([]byte, 0, len(doc)+len(doc)/4)
	out, ok = p.node(out, p.lines[p.i].indent)
	if !ok {
		return nil, top, false
	}
	p.skipBlank()
	if p.i != len(p.lines) {
		return nil, top, false
	}
	return out, top, true
}

// printable reports whether doc is valid UTF-8 made of the characters YAML
// allows (the full parser rejects the rest, and should say so), with LF or
// CRLF line breaks.
func printable(doc []byte) bool {
	for i := 0; i < len(doc); {
		c := doc[i]
		if c < utf8.RuneSelf {
			if c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c == 0x7f {
				return false
			}
			if c == '\r' && (i+1 == len(doc) || doc[i+1] != '\n') {
				return false // a lone CR breaks lines in YAML; lines here end in LF
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(doc[i:])
		if r == utf8.RuneError || r < 0xa0 && r != 0x85 || r >= 0xd800 && r < 0xe000 || r == 0xfeff || r == 0xfffe || r == 0xffff {
			return false
		}
		i += n
	}
	return true
}

type blockLine struct {
	indent  int
	content []byte
	raw     []byte
}

type blockParser struct {
	lines []blockLine
	i     int
	depth int       // collections entered
	top   *topLevel // filled from the outermost mapping
}

func (p *blockParser) skipBlank() {
	for p.i < len(p.lines) {
		c := p.lines[p.i].content
		if len(c) != 0 && c[0] != '#' {
			if c[0] == '\t' {
				return // a tab in the indentation: let the full parser judge
			}
			return
		}
		p.i++
	}
}

// node converts the collection starting at the current line, whose
// entries sit at column indent.
func (p *blockParser) node(out []byte, indent int) ([]byte, bool) {
	l := p.lines[p.i]
	if l.indent != indent || len(l.content) == 0 || l.content[0] == '\t' {
		return nil, false
	}
	if isSeqItem(l.content) {
		return p.sequence(out, indent)
	}
	return p.mapping(out, indent)
}

func isSeqItem(c []byte) bool { return c[0] == '-' && (len(c) == 1 || c[1] == ' ') }

func (p *blockParser) sequence(out []byte, indent int) ([]byte, bool) {
	p.depth++
	defer func() { p.depth-- }()
	out = append(out, '[')
	first := true
	for {
		p.skipBlank()
		if p.i == len(p.lines) {
			break
		}
		l := p.lines[p.i]
		if l.indent < indent {
			break
		}
		if l.indent == indent && !isSeqItem(l.content) {
			break // the next key of the mapping holding this sequence
		}
		if l.indent > indent {
			return nil, false
		}
		if !first {
			out = append(out, ',')
		}
		first = false
		pad := 1
		for pad < len(l.content) && l.content[pad] == ' ' {
			pad++
		}
		rest := l.content[pad:]
		var ok bool
		switch {
		case len(rest) == 0 || rest[0] == '#':
			p.i++
			p.skipBlank()
			if p.i == len(p.lines) || p.lines[p.i].indent <= indent {
				out = append(out, "null"...)
				continue
			}
			out, ok = p.node(out, p.lines[p.i].indent)
		case isSeqItem(rest) || hasKey(rest):
			// "- key: v" or "- - x": the item is a collection whose first
			// entry is on this line, at the column after the dash.
			p.lines[p.i] = blockLine{indent: indent + pad, content: rest, raw: l.raw}
			out, ok = p.node(out, indent+pad)
		default:
			out, ok = p.scalar(out, rest, indent)
		}
		if !ok {
			return nil, false
		}
	}
	return append(out, ']'), true
}

func (p *blockParser) mapping(out []byte, indent int) ([]byte, bool) {
	outermost := p.depth == 0
	p.depth++
	defer func() { p.depth-- }()
	out = append(out, '{')
	first := true
	for {
		p.skipBlank()
		if p.i == len(p.lines) {
			break
		}
		l := p.lines[p.i]
		if l.indent < indent {
			break
		}
		if l.indent > indent || isSeqItem(l.content) {
			return nil, false
		}
		key, rest, ok := splitKey(l.content)
		if !ok {
			return nil, false
		}
		if !first {
			out = append(out, ',')
		}
		first = false
		out = appendJSONString(out, key)
		out = append(out, ':')
		valueAt := len(out)
		if len(rest) == 0 || rest[0] == '#' {
			p.i++
			p.skipBlank()
			switch {
			case p.i == len(p.lines) || p.lines[p.i].indent < indent:
				out = append(out, "null"...)
			case p.lines[p.i].indent == indent:
				// "key:" then "- item" at the key's own column is a sequence.
				if !isSeqItem(p.lines[p.i].content) {
					out = append(out, "null"...)
					continue
				}
				out, ok = p.sequence(out, indent)
			default:
				out, ok = p.node(out, p.lines[p.i].indent)
			}
		} else {
			out, ok = p.scalar(out, rest, indent)
		}
		if !ok {
			return nil, false
		}
		if outermost {
			p.noteTop(key, out[valueAt:])
		}
	}
	return append(out, '}'), true
}

// noteTop records a top-level field that routes the document.
func (p *blockParser) noteTop(key string, value []byte) {
	var dst *string
	switch key {
	case "items":
		p.top.hasItems = true
		return
	case "apiVersion":
		dst = &p.top.env.APIVersion
	case "kind":
		dst = &p.top.env.Kind
	default:
		return
	}
	if len(value) > 0 && value[0] == '"' {
		_ = json.Unmarshal(value, dst)
	}
}

// hasKey reports whether a line is "key: ..." or "key:".
func hasKey(c []byte) bool {
	_, _, ok := splitKey(c)
	return ok
}

// splitKey splits "key: rest" (key plain or quoted) into the key's text and
// the value after the separator.
func splitKey(c []byte) (key string, rest []byte, ok bool) {
	var after []byte
	switch c[0] {
	case '"', '\'':
		s, n, ok := quoted(c)
		if !ok {
			return "", nil, false
		}
		key, after = s, c[n:]
	default:
		end := -1
		for i := 0; i < len(c); i++ {
			if c[i] == ':' && (i+1 == len(c) || c[i+1] == ' ') {
				end = i
				break
			}
		}
		if end <= 0 {
			return "", nil, false
		}
		k := c[:end]
		if !plainString(k) {
			return "", nil, false
		}
		key, after = string(k), c[end:]
	}
	if len(after) == 0 || after[0] != ':' || (len(after) > 1 && after[1] != ' ') {
		return "", nil, false
	}
	return key, bytes.TrimLeft(after[1:], " "), true
}

// scalar converts the value that ends the current line (or a literal block
// starting there) and moves past it.
func (p *blockParser) scalar(out []byte, v []byte, indent int) ([]byte, bool) {
	p.i++
	switch v[0] {
	case '"', '\'':
		s, n, ok := quoted(v)
		if !ok || !onlyComment(v[n:]) {
			return nil, false
		}
		return appendJSONString(out, s), true
	case '|':
		return p.literal(out, v, indent)
	case '{', '[':
		out, ok := flowCollection(out, trimComment(v))
		return out, ok && p.noContinuation(indent)
	}
	v = trimComment(v)
	if v == nil {
		return nil, false
	}
	switch string(v) {
	case "null", "~":
		return append(out, "null"...), p.noContinuation(indent)
	case "true", "false":
		return append(out, v...), p.noContinuation(indent)
	}
	out, ok := plainScalar(out, v)
	return out, ok && p.noContinuation(indent)
}

// plainScalar converts an unquoted value whose type is unambiguous.
func plainScalar(out, v []byte) ([]byte, bool) {
	switch string(v) {
	case "null", "~":
		return append(out, "null"...), true
	case "true", "false":
		return append(out, v...), true
	}
	switch {
	case plainInt(v):
		return append(out, v...), true
	case plainString(v), dottedAddress(v), quantity(v):
		return appendJSONString(out, string(v)), true
	}
	return nil, false
}

// flowCollection converts a one-line flow mapping or sequence of scalars,
// such as {app: web} or [Ingress, Egress]; nested ones go the slow way.
func flowCollection(out, v []byte) ([]byte, bool) {
	if len(v) < 2 {
		return nil, false
	}
	open, end := v[0], v[len(v)-1]
	if open == '{' && end != '}' || open == '[' && end != ']' {
		return nil, false
	}
	body := bytes.TrimSpace(v[1 : len(v)-1])
	out = append(out, open)
	if len(body) == 0 {
		return append(out, end), true
	}
	var ok bool
	for i, entry := range bytes.Split(body, []byte(",")) {
		entry = bytes.TrimSpace(entry)
		if len(entry) == 0 || bytes.ContainsAny(entry, "{}[]\"'") {
			return nil, false
		}
		if i > 0 {
			out = append(out, ',')
		}
		if open == '{' {
			key, rest, isKey := splitKey(entry)
			if !isKey || len(rest) == 0 {
				return nil, false
			}
			out = appendJSONString(out, key)
			out = append(out, ':')
			entry = rest
		}
		if out, ok = plainScalar(out, entry); !ok {
			return nil, false
		}
	}
	return append(out, end), true
}

// noContinuation rejects a plain scalar continued on the next line (more
// indented, not a collection entry): the full parser folds it.
func (p *blockParser) noContinuation(indent int) bool {
	j := p.i
	for j < len(p.lines) && (len(p.lines[j].content) == 0 || p.lines[j].content[0] == '#') {
		j++
	}
	return j == len(p.lines) || p.lines[j].indent <= indent
}

// literal converts a `|` or `|-` block: the lines indented deeper than the
// key, joined by newlines.
func (p *blockParser) literal(out []byte, v []byte, indent int) ([]byte, bool) {
	chomp := string(trimComment(v))
	if chomp != "|" && chomp != "|-" {
		return nil, false
	}
	start := p.i
	blockIndent := -1
	for p.i < len(p.lines) {
		l := p.lines[p.i]
		if len(bytes.TrimSpace(l.raw)) == 0 {
			p.i++
			continue
		}
		if l.indent <= indent {
			break
		}
		if blockIndent < 0 {
			blockIndent = l.indent
		}
		if l.indent < blockIndent {
			return nil, false
		}
		p.i++
	}
	if blockIndent < 0 {
		return nil, false
	}
	var b []byte
	end := p.i
	for end > start && len(bytes.TrimSpace(p.lines[end-1].raw)) == 0 {
		end-- // trailing blank lines belong to no one under these chomping modes
	}
	if end == len(p.lines) {
		return nil, false // the last line has no line break, which clipping keeps out: the full parser knows
	}
	for j := start; j < p.i; j++ {
		if raw := p.lines[j].raw; len(bytes.TrimSpace(raw)) == 0 && len(raw) > blockIndent {
			return nil, false // spaces beyond the indentation are content: the full parser knows how much
		}
	}
	for j := start; j < end; j++ {
		raw := p.lines[j].raw
		if len(raw) >= blockIndent {
			b = append(b, raw[blockIndent:]...)
		}
		b = append(b, '\n')
	}
	if chomp == "|-" {
		b = bytes.TrimSuffix(b, []byte("\n"))
	}
	return appendJSONString(out, string(b)), true
}

// trimComment drops a trailing " # comment"; nil when the value is empty.
func trimComment(v []byte) []byte {
	if i := bytes.Index(v, []byte(" #")); i >= 0 {
		v = v[:i]
	}
	v = bytes.TrimRight(v, " ")
	if len(v) == 0 {
		return nil
	}
	return v
}

func onlyComment(rest []byte) bool {
	rest = bytes.TrimLeft(rest, " ")
	return len(rest) == 0 || rest[0] == '#'
}

// plainString is a plain scalar that YAML 1.1 (as sigs.k8s.io/yaml reads
// it) surely resolves to a string: it starts with a letter, holds no
// character with a meaning in YAML, and is not one of YAML 1.1's boolean or
// null words.
func plainString(v []byte) bool {
	if len(v) == 0 || !(v[0] >= 'a' && v[0] <= 'z' || v[0] >= 'A' && v[0] <= 'Z') {
		return false
	}
	for i, c := range v {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-', c == '_', c == '.', c == '/', c == '=', c == '+', c == '@', c == '(', c == ')':
		case c == ':' && i+1 < len(v) && v[i+1] != ' ':
		case c == ' ' && i+1 < len(v) && v[i+1] != '#' && v[i+1] != ' ':
		default:
			return false
		}
	}
	switch string(v) {
	case "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO",
		"true", "True", "TRUE", "false", "False", "FALSE",
		"on", "On", "ON", "off", "Off", "OFF", "null", "Null", "NULL":
		return false
	}
	return true
}

// plainInt is a decimal integer without sign or leading zero (YAML 1.1
// reads 010 as octal) that fits an int64.
func plainInt(v []byte) bool {
	if len(v) == 0 || len(v) > 18 || (v[0] == '0' && len(v) > 1) {
		return false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// dottedAddress is an IPv4 address or prefix ("10.0.0.0/8"): digits with
// two or more dots are neither an int nor a float nor a timestamp in YAML
// 1.1, so they are strings.
func dottedAddress(v []byte) bool {
	dots := 0
	for i, c := range v {
		switch {
		case c >= '0' && c <= '9':
		case c == '.' && i > 0 && v[i-1] != '.':
			dots++
		case c == '/' && dots == 3:
		default:
			return false
		}
	}
	return dots >= 2 && v[0] != '.' && v[len(v)-1] != '.'
}

// quantity is a resource quantity such as 100m or 128Mi: digits and a
// unit suffix are no number in YAML 1.1 (suffixes that read as an exponent,
// a base or a float are left out).
func quantity(v []byte) bool {
	i := 0
	for i < len(v) && v[i] >= '0' && v[i] <= '9' {
		i++
	}
	if i == 0 || (v[0] == '0' && i > 1) {
		return false
	}
	switch string(v[i:]) {
	case "m", "k", "M", "G", "T", "P", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei":
		return true
	}
	return false
}

// quoted reads a quoted scalar at the start of c, returning its value and
// how many bytes it took. Double-quoted escapes other than the JSON ones
// are left to the full parser.
func quoted(c []byte) (string, int, bool) {
	q := c[0]
	var b []byte
	for i := 1; i < len(c); i++ {
		ch := c[i]
		switch {
		case q == '\'' && ch == '\'':
			if i+1 < len(c) && c[i+1] == '\'' {
				b = append(b, '\'')
				i++
				continue
			}
			return string(b), i + 1, true
		case q == '"' && ch == '"':
			return string(b), i + 1, true
		case q == '"' && ch == '\\':
			if i+1 == len(c) {
				return "", 0, false
			}
			i++
			switch c[i] {
			case '"', '\\', '/':
				b = append(b, c[i])
			case 'n':
				b = append(b, '\n')
			case 't':
				b = append(b, '\t')
			case 'r':
				b = append(b, '\r')
			case 'u':
				if i+4 >= len(c) {
					return "", 0, false
				}
				r, err := strconv.ParseUint(string(c[i+1:i+5]), 16, 32)
				if err != nil || (r >= 0xd800 && r < 0xe000) {
					return "", 0, false
				}
				b = utf8.AppendRune(b, rune(r))
				i += 4
			default:
				return "", 0, false
			}
		default:
			b = append(b, ch)
		}
	}
	return "", 0, false // not closed on this line: multi-line quoted scalars go the slow way
}

const hexDigits = "0123456789abcdef"

// appendJSONString writes s as a JSON string (s is valid UTF-8).
func appendJSONString(out []byte, s string) []byte {
	out = append(out, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			out = append(out, '\\', c)
		case c == '\n':
			out = append(out, '\\', 'n')
		case c == '\t':
			out = append(out, '\\', 't')
		case c == '\r':
			out = append(out, '\\', 'r')
		case c < 0x20:
			out = append(out, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
		default:
			out = append(out, c)
		}
	}
	return append(out, '"')
}

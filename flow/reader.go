package flow

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protojson"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

// maxLine bounds one JSON line; a flow is well under 4 KiB.
const maxLine = 1 << 20

// Reader reads JSON-lines flows, as written by `watch -o json`.
type Reader struct {
	sc   *bufio.Scanner
	name string
	line int
}

// NewReader reads flows from r; name is used in error messages (the file name).
func NewReader(r io.Reader, name string) *Reader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	return &Reader{sc: sc, name: name}
}

var jsonUnmarshal = protojson.UnmarshalOptions{DiscardUnknown: true}

// Next returns the next flow, or io.EOF. Blank lines are skipped; a line that
// is not a Flow is an error naming the file and line.
func (r *Reader) Next() (*flowv1.Flow, error) {
	for r.sc.Scan() {
		r.line++
		b := r.sc.Bytes()
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		f := &flowv1.Flow{}
		if err := jsonUnmarshal.Unmarshal(b, f); err != nil {
			return nil, fmt.Errorf("%s:%d: not a flow (want JSON lines as written by `kubectl netpol watch -o json`): %w", r.name, r.line, err)
		}
		return f, nil
	}
	if err := r.sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%s:%d: line longer than %d bytes: not a flow", r.name, r.line+1, maxLine)
		}
		return nil, fmt.Errorf("reading %s: %w", r.name, err)
	}
	return nil, io.EOF
}

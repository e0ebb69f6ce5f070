// Differential-test oracle for crates/image-reflector: answers questions about Masterminds
// semver v3 (Debian's golang-github-masterminds-semver-dev), Go regexp and strconv.ParseFloat.
//
// Input: one JSON array of strings per line; output: one JSON value per line, in order.
//   ["V", tag]                 -> "err" or canonical String() (fluxcd/pkg ParseVersion rules)
//   ["C", range]               -> "ok" or "err"
//   ["M", range, tag]          -> true/false (range valid, tag parses and satisfies it)
//   ["X", range, tag...]       -> "none" or "major.minor.patch[-pre]" of the max in range
//   ["P", a, b]                -> -1/0/1 (Compare)
//   ["F", s]                   -> "syntax", "range" or the float64 bits in hex
//   ["R", pattern]             -> "ok" or "err"
//   ["E", pattern, tpl, input] -> null (no match) or the Expand result
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/Masterminds/semver/v3"
)

func parseTag(tag string) (*semver.Version, error) {
	// fluxcd/pkg version.ParseVersion: three dot-separated parts required first.
	if len(strings.SplitN(tag, ".", 3)) != 3 {
		return nil, fmt.Errorf("too few parts")
	}
	return semver.NewVersion(tag)
}

func noBuild(v *semver.Version) string {
	s := fmt.Sprintf("%d.%d.%d", v.Major(), v.Minor(), v.Patch())
	if v.Prerelease() != "" {
		s += "-" + v.Prerelease()
	}
	return s
}

func answer(q []string) interface{} {
	switch q[0] {
	case "V":
		v, err := parseTag(q[1])
		if err != nil {
			return "err"
		}
		return v.String()
	case "C":
		if _, err := semver.NewConstraint(q[1]); err != nil {
			return "err"
		}
		return "ok"
	case "M":
		c, err := semver.NewConstraint(q[1])
		if err != nil {
			return false
		}
		v, err := parseTag(q[2])
		if err != nil {
			return false
		}
		return c.Check(v)
	case "X":
		c, err := semver.NewConstraint(q[1])
		if err != nil {
			return "none"
		}
		var best *semver.Version
		for _, t := range q[2:] {
			v, err := parseTag(t)
			if err != nil || !c.Check(v) {
				continue
			}
			if best == nil || v.GreaterThan(best) {
				best = v
			}
		}
		if best == nil {
			return "none"
		}
		return noBuild(best)
	case "P":
		a, err1 := semver.NewVersion(q[1])
		b, err2 := semver.NewVersion(q[2])
		if err1 != nil || err2 != nil {
			return "err"
		}
		return a.Compare(b)
	case "F":
		f, err := strconv.ParseFloat(q[1], 64)
		if err != nil {
			if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
				return "range"
			}
			return "syntax"
		}
		if math.IsNaN(f) {
			return "nan"
		}
		return fmt.Sprintf("%016x", math.Float64bits(f))
	case "R":
		if _, err := regexp.Compile(q[1]); err != nil {
			return "err"
		}
		return "ok"
	case "E":
		re, err := regexp.Compile(q[1])
		if err != nil {
			return "err"
		}
		m := re.FindStringSubmatchIndex(q[3])
		if m == nil {
			return nil
		}
		return string(re.ExpandString(nil, q[2], q[3], m))
	}
	return "unknown question"
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	for in.Scan() {
		var q []string
		if err := json.Unmarshal(in.Bytes(), &q); err != nil || len(q) == 0 {
			fmt.Fprintf(os.Stderr, "bad question %q: %v\n", in.Text(), err)
			os.Exit(2)
		}
		if err := enc.Encode(answer(q)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}

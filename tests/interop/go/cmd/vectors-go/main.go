// vectors-go encodes every case of vectors.json with the Go protobuf runtime and decodes
// the bytes back, printing [{"hex": ..., "decoded": {...}}, ...] for cross-language diffing.
//
// The output is byte-identical to python/vectors.py for equal results: decoded fields come
// in declaration order and doubles are printed the way Python's repr does ("-0.0", "1e-300").
package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	_ "greeter-interop/proto" // registers the greeter.* message types
)

type vector struct {
	Name    string         `json:"name"`
	Message string         `json:"message"`
	Fields  map[string]any `json:"fields"`
}

type result struct {
	Hex     string `json:"hex"`
	Decoded object `json:"decoded"`
}

// object is a JSON object that keeps its keys in insertion order.
type object []member

type member struct {
	key   string
	value any
}

func (o object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, kv := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := marshal(kv.key)
		if err != nil {
			return nil, err
		}
		v, err := marshal(kv.value)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// double prints like Python's float repr: shortest round-trip digits, exponent form
// outside [1e-4, 1e16), and always a "." or exponent so -0.0 keeps its sign.
type double float64

func (d double) MarshalJSON() ([]byte, error) {
	f := float64(d)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("%v has no JSON form", f)
	}
	s := strconv.FormatFloat(f, 'e', -1, 64)
	exp, _ := strconv.Atoi(s[strings.IndexByte(s, 'e')+1:])
	if exp < -4 || exp >= 16 {
		return []byte(s), nil
	}
	s = strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return []byte(s), nil
}

// marshal is json.Marshal without HTML escaping (Python does not escape <, >, &).
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: vectors-go VECTORS.json")
		os.Exit(2)
	}
	raw, err := os.ReadFile(os.Args[1])
	check(err)
	// UseNumber keeps int32 extremes and doubles exact until we parse them per field kind.
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var vectors []vector
	check(dec.Decode(&vectors))

	out := make([]result, 0, len(vectors))
	for _, v := range vectors {
		r, err := run(v.Message, v.Fields)
		if err != nil {
			fmt.Fprintf(os.Stderr, "vector %q: %v\n", v.Name, err)
			os.Exit(1)
		}
		out = append(out, r)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	check(enc.Encode(out))
}

func run(message string, fields map[string]any) (result, error) {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName("greeter." + message))
	if err != nil {
		return result{}, err
	}
	m := mt.New()
	fds := m.Descriptor().Fields()
	for name, jv := range fields {
		fd := fds.ByName(protoreflect.Name(name))
		if fd == nil {
			return result{}, fmt.Errorf("%s has no field %q", message, name)
		}
		val, err := toValue(fd, jv)
		if err != nil {
			return result{}, fmt.Errorf("field %q: %v", name, err)
		}
		m.Set(fd, val)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m.Interface())
	if err != nil {
		return result{}, err
	}

	back := mt.New()
	if err := proto.Unmarshal(b, back.Interface()); err != nil {
		return result{}, err
	}
	var decoded object
	for i := 0; i < fds.Len(); i++ {
		fd := fds.Get(i)
		v := back.Get(fd).Interface()
		if f, ok := v.(float64); ok {
			v = double(f)
		}
		decoded = append(decoded, member{string(fd.Name()), v})
	}
	return result{Hex: hex.EncodeToString(b), Decoded: decoded}, nil
}

// toValue covers the three scalar kinds greeter.proto uses.
func toValue(fd protoreflect.FieldDescriptor, jv any) (protoreflect.Value, error) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		s, ok := jv.(string)
		if !ok {
			return protoreflect.Value{}, fmt.Errorf("want a JSON string, got %v", jv)
		}
		return protoreflect.ValueOfString(s), nil
	case protoreflect.DoubleKind:
		n, ok := jv.(json.Number)
		if !ok {
			return protoreflect.Value{}, fmt.Errorf("want a JSON number, got %v", jv)
		}
		f, err := strconv.ParseFloat(string(n), 64)
		if err != nil {
			return protoreflect.Value{}, err
		}
		return protoreflect.ValueOfFloat64(f), nil
	case protoreflect.Int32Kind:
		n, ok := jv.(json.Number)
		if !ok {
			return protoreflect.Value{}, fmt.Errorf("want a JSON number, got %v", jv)
		}
		i, err := strconv.ParseInt(string(n), 10, 32)
		if err != nil {
			return protoreflect.Value{}, err
		}
		return protoreflect.ValueOfInt32(int32(i)), nil
	}
	return protoreflect.Value{}, fmt.Errorf("unsupported kind %v", fd.Kind())
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

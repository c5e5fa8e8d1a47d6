package imipserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"imip-transport/imipside/wire"
)

// MaxNickLen is the longest nickname accepted, in bytes.
const MaxNickLen = 64

// Validate reports whether a can be stored: a valid number, a non-empty
// password, and a nick without double quotes or control characters (it is
// written inside double quotes in From and Buddy headers).
func (a Account) Validate() error {
	if !a.Number.Valid() {
		return fmt.Errorf("imipserver: account number %q: not a number", string(a.Number))
	}
	if a.Password == "" {
		return fmt.Errorf("imipserver: account %s: empty password", a.Number)
	}
	if len(a.Nick) > MaxNickLen {
		return fmt.Errorf("imipserver: account %s: nick longer than %d bytes", a.Number, MaxNickLen)
	}
	for _, r := range a.Nick {
		if r == '"' || r < 0x20 || r == 0x7f {
			return fmt.Errorf("imipserver: account %s: nick holds %q", a.Number, r)
		}
	}
	return nil
}

// accountsFile is the shape of accounts.toml.
type accountsFile struct {
	Account []struct {
		Number   tomlNumber `toml:"number"`
		Password string     `toml:"password"`
		Nick     string     `toml:"nick"`
	} `toml:"account"`
}

// DecodeAccounts decodes an accounts file:
//
//	[[account]]
//	number = "1001001"
//	password = "..."
//	nick = "alice"
//
// Unknown keys, invalid accounts and duplicate numbers are errors.
func DecodeAccounts(r io.Reader) ([]Account, error) {
	var f accountsFile
	md, err := toml.NewDecoder(r).Decode(&f)
	if err != nil {
		return nil, fmt.Errorf("imipserver: accounts: %w", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return nil, fmt.Errorf("imipserver: accounts: unknown keys: %s", strings.Join(keys, ", "))
	}
	seen := make(map[wire.Number]bool, len(f.Account))
	out := make([]Account, 0, len(f.Account))
	for i, e := range f.Account {
		a := Account{Number: wire.Number(e.Number), Password: e.Password, Nick: e.Nick}
		if err := a.Validate(); err != nil {
			return nil, fmt.Errorf("imipserver: accounts: entry %d: %w", i+1, err)
		}
		if seen[a.Number] {
			return nil, fmt.Errorf("imipserver: accounts: entry %d: duplicate number %s", i+1, a.Number)
		}
		seen[a.Number] = true
		out = append(out, a)
	}
	return out, nil
}

// LoadAccounts decodes an accounts file (see DecodeAccounts) and upserts
// every account into st. It returns how many accounts it stored.
func LoadAccounts(ctx context.Context, st Store, data []byte) (int, error) {
	accts, err := DecodeAccounts(bytes.NewReader(data))
	if err != nil {
		return 0, err
	}
	for i, a := range accts {
		if err := st.PutAccount(ctx, a); err != nil {
			return i, fmt.Errorf("imipserver: accounts: %w", err)
		}
	}
	return len(accts), nil
}

// tomlNumber decodes a number written either as a TOML integer or string.
type tomlNumber string

// UnmarshalTOML implements toml.Unmarshaler.
func (n *tomlNumber) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		if v < 0 {
			return errors.New("imipserver: negative account number")
		}
		*n = tomlNumber(strconv.FormatInt(v, 10))
	case string:
		*n = tomlNumber(v)
	default:
		return fmt.Errorf("imipserver: account number: want integer or string, got %T", v)
	}
	return nil
}

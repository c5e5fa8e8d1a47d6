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
		Number   tomlNumber   `toml:"number"`
		Password string       `toml:"password"`
		Nick     string       `toml:"nick"`
		Contacts []tomlNumber `toml:"contacts"`
	} `toml:"account"`
}

// Seed is what an accounts file holds: accounts, and the contacts each
// account starts with on its list.
type Seed struct {
	Accounts []Account
	// Lists maps an account to the numbers on its contact list.
	Lists map[wire.Number][]wire.Number
}

// DecodeAccounts decodes an accounts file (see DecodeSeed) and returns its
// accounts.
func DecodeAccounts(r io.Reader) ([]Account, error) {
	s, err := DecodeSeed(r)
	return s.Accounts, err
}

// DecodeSeed decodes an accounts file:
//
//	[[account]]
//	number = "1001001"
//	password = "..."
//	nick = "alice"
//	contacts = [1002002]   # optional: numbers on this account's list
//
// Unknown keys, invalid accounts, duplicate numbers and contacts that are
// not accounts of the file are errors.
func DecodeSeed(r io.Reader) (Seed, error) {
	var f accountsFile
	md, err := toml.NewDecoder(r).Decode(&f)
	if err != nil {
		return Seed{}, fmt.Errorf("imipserver: accounts: %w", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return Seed{}, fmt.Errorf("imipserver: accounts: unknown keys: %s", strings.Join(keys, ", "))
	}
	seen := make(map[wire.Number]bool, len(f.Account))
	out := make([]Account, 0, len(f.Account))
	for i, e := range f.Account {
		a := Account{Number: wire.Number(e.Number), Password: e.Password, Nick: e.Nick}
		if err := a.Validate(); err != nil {
			return Seed{}, fmt.Errorf("imipserver: accounts: entry %d: %w", i+1, err)
		}
		if seen[a.Number] {
			return Seed{}, fmt.Errorf("imipserver: accounts: entry %d: duplicate number %s", i+1, a.Number)
		}
		seen[a.Number] = true
		out = append(out, a)
	}
	seed := Seed{Accounts: out}
	for i, e := range f.Account {
		for _, c := range e.Contacts {
			n := wire.Number(c)
			if !seen[n] || n == wire.Number(e.Number) {
				return Seed{}, fmt.Errorf("imipserver: accounts: entry %d: contact %q is not another account of the file", i+1, string(c))
			}
			if seed.Lists == nil {
				seed.Lists = make(map[wire.Number][]wire.Number)
			}
			seed.Lists[wire.Number(e.Number)] = append(seed.Lists[wire.Number(e.Number)], n)
		}
	}
	return seed, nil
}

// Apply upserts the seed's accounts into st and adds their contacts.
func (s Seed) Apply(ctx context.Context, st Store) error {
	for _, a := range s.Accounts {
		if err := st.PutAccount(ctx, a); err != nil {
			return fmt.Errorf("imipserver: accounts: %w", err)
		}
	}
	for owner, list := range s.Lists {
		for _, c := range list {
			if err := st.AddContact(ctx, owner, c); err != nil {
				return fmt.Errorf("imipserver: accounts: contacts of %s: %w", owner, err)
			}
		}
	}
	return nil
}

// LoadAccounts decodes an accounts file (see DecodeSeed), upserts every
// account into st and adds the contacts it lists. It returns how many
// accounts it stored.
func LoadAccounts(ctx context.Context, st Store, data []byte) (int, error) {
	seed, err := DecodeSeed(bytes.NewReader(data))
	if err != nil {
		return 0, err
	}
	if err := seed.Apply(ctx, st); err != nil {
		return 0, err
	}
	return len(seed.Accounts), nil
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

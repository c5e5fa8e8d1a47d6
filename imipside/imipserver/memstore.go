package imipserver

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"imip-transport/imipside/wire"
)

// MemStore is a Store held in memory, for tests and demos.
// Its zero value is not usable; call NewMemStore.
type MemStore struct {
	mu       sync.Mutex
	accounts map[wire.Number]Account
	lists    map[wire.Number]map[wire.Number]struct{} // owner -> contacts
	requests []Request
	messages []Message
	nextID   int64
}

var _ Store = (*MemStore)(nil)

// NewMemStore returns an empty in-memory store.
func NewMemStore() *MemStore {
	return &MemStore{
		accounts: make(map[wire.Number]Account),
		lists:    make(map[wire.Number]map[wire.Number]struct{}),
	}
}

// Account implements Store.
func (m *MemStore) Account(_ context.Context, n wire.Number) (Account, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.accounts[n]
	if !ok {
		return Account{}, fmt.Errorf("imipserver: account %s: %w", n, ErrNotFound)
	}
	return a, nil
}

// PutAccount implements Store.
func (m *MemStore) PutAccount(_ context.Context, a Account) error {
	if err := a.Validate(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.accounts[a.Number] = a
	return nil
}

// Contacts implements Store.
func (m *MemStore) Contacts(_ context.Context, owner wire.Number) ([]wire.Buddy, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []wire.Buddy
	for c := range m.lists[owner] {
		out = append(out, wire.Buddy{Number: c, Nick: m.accounts[c].Nick})
	}
	slices.SortFunc(out, func(a, b wire.Buddy) int { return compareNumbers(a.Number, b.Number) })
	return out, nil
}

// Watchers implements Store.
func (m *MemStore) Watchers(_ context.Context, contact wire.Number) ([]wire.Number, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []wire.Number
	for owner, list := range m.lists {
		if _, ok := list[contact]; ok {
			out = append(out, owner)
		}
	}
	slices.SortFunc(out, compareNumbers)
	return out, nil
}

// HasContact implements Store.
func (m *MemStore) HasContact(_ context.Context, owner, contact wire.Number) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.lists[owner][contact]
	return ok, nil
}

// AddContact implements Store.
func (m *MemStore) AddContact(_ context.Context, owner, contact wire.Number) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	list := m.lists[owner]
	if list == nil {
		list = make(map[wire.Number]struct{})
		m.lists[owner] = list
	}
	list[contact] = struct{}{}
	return nil
}

// RemoveContact implements Store.
func (m *MemStore) RemoveContact(_ context.Context, owner, contact wire.Number) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.lists[owner][contact]
	delete(m.lists[owner], contact)
	return ok, nil
}

// PutRequest implements Store.
func (m *MemStore) PutRequest(_ context.Context, r Request) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests = slices.DeleteFunc(m.requests, func(x Request) bool { return x.From == r.From && x.To == r.To })
	m.requests = append(m.requests, r)
	return nil
}

// DeleteRequest implements Store.
func (m *MemStore) DeleteRequest(_ context.Context, from, to wire.Number) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := len(m.requests)
	m.requests = slices.DeleteFunc(m.requests, func(x Request) bool { return x.From == from && x.To == to })
	return len(m.requests) != n, nil
}

// Requests implements Store.
func (m *MemStore) Requests(_ context.Context, to wire.Number) ([]Request, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Request
	for _, r := range m.requests {
		if r.To == to {
			out = append(out, r)
		}
	}
	return out, nil
}

// PutMessage implements Store.
func (m *MemStore) PutMessage(_ context.Context, msg Message) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nextID++
	msg.ID = m.nextID
	m.messages = append(m.messages, msg)
	return msg.ID, nil
}

// Messages implements Store.
func (m *MemStore) Messages(_ context.Context, to wire.Number, after int64, limit int) ([]Message, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("imipserver: messages: limit %d is not positive", limit)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Message
	for _, msg := range m.messages { // in ID order: PutMessage appends
		if msg.To == to && msg.ID > after {
			out = append(out, msg)
			if len(out) == limit {
				break
			}
		}
	}
	return out, nil
}

// CountHeld implements Store.
func (m *MemStore) CountHeld(_ context.Context, to, from wire.Number) (int, int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var fromSender, total int
	for _, msg := range m.messages {
		if msg.To == to {
			total++
			if msg.From == from {
				fromSender++
			}
		}
	}
	return fromSender, total, nil
}

// DeleteMessages implements Store.
func (m *MemStore) DeleteMessages(_ context.Context, ids ...int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.messages = slices.DeleteFunc(m.messages, func(x Message) bool { return slices.Contains(ids, x.ID) })
	return nil
}

// Close implements Store; it keeps the contents.
func (m *MemStore) Close() error { return nil }

// compareNumbers orders numbers numerically (shorter first, then by digits).
func compareNumbers(a, b wire.Number) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

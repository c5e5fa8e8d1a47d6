package gateway

// The storage the gateway consumes: registrations and contact lists.

import (
	"context"
	"errors"
	"time"

	"imip-transport/imipside/wire"
	"imip-transport/roster"
)

// ErrNotFound is returned, wrapped, when a [Store] holds no registration for
// a JID. Test for it with errors.Is.
var ErrNotFound = errors.New("gateway: not found")

// Registration is one XMPP user's IMIP account.
type Registration struct {
	// JID is the user's bare JID, the key of the registration.
	JID string
	// Number is the user's IMIP number.
	Number wire.Number
	// Password is the IMIP password in clear: the imip-md5 login hashes the
	// server's salt with the password, so a hash cannot be stored instead.
	Password string
	// AllowRemove lets the user's unsubscribe remove contacts from the IMIP
	// list (see roster.Options).
	AllowRemove bool
	// Created and Updated are set by the Store: when the registration was
	// first stored, and when it was last written.
	Created, Updated time.Time
}

// Store persists registrations and contact lists.
// Every method blocks until the storage answers or ctx is done, and is safe
// for concurrent use.
// Writes are durable when the method returns nil.
type Store interface {
	// Registration returns the registration of bareJID, or an error wrapping
	// ErrNotFound when there is none.
	Registration(ctx context.Context, bareJID string) (Registration, error)

	// PutRegistration inserts r, or updates the number, password and
	// options of the registration with the same JID.
	// A change of number drops the saved contact list, which belonged to
	// the other IMIP account.
	// The Store sets Created on insert and Updated on every write; the
	// values in r are ignored.
	PutRegistration(ctx context.Context, r Registration) error

	// DeleteRegistration deletes the registration of bareJID and all its
	// contacts. Deleting an absent registration returns an error wrapping
	// ErrNotFound.
	DeleteRegistration(ctx context.Context, bareJID string) error

	// Registrations returns every registration, ordered by JID.
	Registrations(ctx context.Context) ([]Registration, error)

	// Contacts returns the contact list last saved for bareJID, pending
	// requests included, ordered by number. It is empty (and the error nil)
	// when nothing was saved.
	Contacts(ctx context.Context, bareJID string) ([]roster.Contact, error)

	// SaveContacts replaces the whole contact list of bareJID with cs, all at
	// once: a reader sees the old list or the new one, never a mix.
	// It returns an error wrapping ErrNotFound when bareJID is not
	// registered.
	SaveContacts(ctx context.Context, bareJID string, cs []roster.Contact) error

	// Close releases the storage. It does not wait for calls in progress to
	// finish; no method may be called after it.
	Close() error
}

package roster

import "imip-transport/imipside/wire"

// An Event is something that happened on either network and may change the
// list. The concrete types are the User* events (presence stanzas from the
// user's XMPP account to number@gateway) and the Server* events (blocks from
// the IMIP server).
type Event interface{ isEvent() }

// UserSubscribe is the user's presence subscribe to number@gateway: the user
// asks to add Number to the IMIP list. Status is the stanza's status text,
// sent along as the request text.
type UserSubscribe struct {
	Number wire.Number
	Status string
}

// UserSubscribed is the user's presence subscribed to number@gateway: the
// user accepts a request from Number.
type UserSubscribed struct{ Number wire.Number }

// UserUnsubscribe is the user's presence unsubscribe to number@gateway: the
// user cancels a request to Number or drops Number from the list.
type UserUnsubscribe struct{ Number wire.Number }

// UserUnsubscribed is the user's presence unsubscribed to number@gateway:
// the user refuses a request from Number (or cancels a subscription the
// contact never had).
type UserUnsubscribed struct{ Number wire.Number }

// ServerStat is a STAT block from the server about contact Number (any
// presence value). The first one for a PendingOut contact means the contact
// accepted the user's request.
type ServerStat struct{ Number wire.Number }

// ServerListAdd is a LIST ADD block from the server: Number (known as Nick)
// asks to add the user, with an optional request Text.
type ServerListAdd struct {
	Number wire.Number
	Nick   string
	Text   string
}

// ServerListAccept is a LIST ACCEPT from the server: Number accepted the
// user's request. Nick is empty when the server sent none.
type ServerListAccept struct {
	Number wire.Number
	Nick   string
}

// ServerListReject is a LIST REJECT from the server: Number refused the
// user's request.
type ServerListReject struct{ Number wire.Number }

// ServerListRemove is a LIST REMOVE from the server: Number dropped the user.
type ServerListRemove struct{ Number wire.Number }

func (UserSubscribe) isEvent()    {}
func (UserSubscribed) isEvent()   {}
func (UserUnsubscribe) isEvent()  {}
func (UserUnsubscribed) isEvent() {}
func (ServerStat) isEvent()       {}
func (ServerListAdd) isEvent()    {}
func (ServerListAccept) isEvent() {}
func (ServerListReject) isEvent() {}
func (ServerListRemove) isEvent() {}

// An Action is something the gateway must do after [List.Apply], in the
// order returned. The concrete types are the Send* actions (IMIP blocks),
// [PresenceToUser], [RosterUpsert], [RosterRemove], [Refused] and [Persist].
type Action interface{ isAction() }

// SendListAdd asks the gateway to send LIST ADD Number with Text as body.
type SendListAdd struct {
	Number wire.Number
	Text   string
}

// SendListAccept asks the gateway to send LIST ACCEPT Number "Nick".
type SendListAccept struct {
	Number wire.Number
	Nick   string
}

// SendListReject asks the gateway to send LIST REJECT Number.
type SendListReject struct{ Number wire.Number }

// SendListRemove asks the gateway to send LIST REMOVE Number.
type SendListRemove struct{ Number wire.Number }

// PresenceType is the type of a subscription presence stanza.
type PresenceType string

// Subscription presence types, spelled as in XMPP.
const (
	Subscribe    PresenceType = "subscribe"
	Subscribed   PresenceType = "subscribed"
	Unsubscribe  PresenceType = "unsubscribe"
	Unsubscribed PresenceType = "unsubscribed"
)

// PresenceToUser asks the gateway to send the user a presence stanza of Type
// from the contact's JID (see [JID]).
// Nick (XEP-0172) and Status are set only for a subscribe.
type PresenceToUser struct {
	From   wire.Number
	Type   PresenceType
	Nick   string
	Status string
}

// RosterUpsert asks the gateway to add or update Contact on the user's XMPP
// roster, where it can (XEP-0356 or XEP-0144).
type RosterUpsert struct{ Contact Contact }

// RosterRemove asks the gateway to remove Number from the user's XMPP
// roster, where it can.
type RosterRemove struct{ Number wire.Number }

// Refused means the user's request was not carried out and nothing was sent
// to IMIP. The gateway tells the user Reason (a message from the gateway's
// address).
type Refused struct {
	Number wire.Number
	Reason string
}

// Persist asks the gateway to save the change of contact Number: the
// contact as [List.Contact] returns it now, or its removal when the list no
// longer holds it. It is always the last action of a list that changed
// state.
type Persist struct{ Number wire.Number }

func (SendListAdd) isAction()    {}
func (SendListAccept) isAction() {}
func (SendListReject) isAction() {}
func (SendListRemove) isAction() {}
func (PresenceToUser) isAction() {}
func (RosterUpsert) isAction()   {}
func (RosterRemove) isAction()   {}
func (Refused) isAction()        {}
func (Persist) isAction()        {}

package xmppside

import (
	"context"
	"encoding/xml"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/stanza"
)

// wireRegister is a XEP-0077 <query/> as a user sends it.
type wireRegister struct {
	Username *string   `xml:"username"`
	Password *string   `xml:"password"`
	Remove   *struct{} `xml:"remove"`
	Form     *wireForm `xml:"jabber:x:data x"`
}

// wireForm is a submitted XEP-0004 data form.
type wireForm struct {
	Type   string `xml:"type,attr"`
	Fields []struct {
		Var    string   `xml:"var,attr"`
		Values []string `xml:"value"`
	} `xml:"field"`
}

// value returns the first value of field name.
func (f *wireForm) value(name string) string {
	for _, fl := range f.Fields {
		if fl.Var == name && len(fl.Values) > 0 {
			return fl.Values[0]
		}
	}
	return ""
}

// registerAllowed checks that a registration IQ goes to the bare component
// domain and comes from a user.
func registerAllowed(iq stanza.IQ) (stanza.Error, bool) {
	if !isDomain(iq.To) || iq.To.Resourcepart() != "" {
		return newStanzaError(stanza.ServiceUnavailable), false
	}
	if iq.From.Localpart() == "" {
		return newStanzaError(stanza.NotAllowed), false
	}
	return stanza.Error{}, true
}

// registerGet answers the XEP-0077 form request, with <registered/> and the
// current username (never the password) when the user is registered.
func (l *link) registerGet(iq stanza.IQ, t xmlstream.TokenReadEncoder, _ *xml.StartElement) error {
	if se, ok := registerAllowed(iq); !ok {
		return l.replyError(t, iq, se)
	}
	user := iq.From.Bare()
	return l.async(t, iq, "registration", func(ctx context.Context) (xml.TokenReader, error) {
		username, registered, err := l.c.h.Registration(ctx, user)
		if err != nil {
			return nil, err
		}
		var opts []RegisterOption
		if or, ok := l.c.h.(OptionRegistrar); ok {
			if opts, err = or.RegisterOptions(ctx, user); err != nil {
				return nil, err
			}
		}
		return l.registerForm(username, registered, opts), nil
	})
}

// registerForm builds the XEP-0077 query with its legacy fields and an
// equivalent data form.
func (l *link) registerForm(username string, registered bool, opts []RegisterOption) xml.TokenReader {
	children := []xml.TokenReader{textElem("", "instructions", l.c.cfg.Instructions)}
	if registered {
		children = append(children, textElem("", "registered", ""))
	} else {
		username = ""
	}
	children = append(children,
		textElem("", "username", username),
		textElem("", "password", ""),
		elem(nsData, "x", attrs("type", "form"),
			textElem("", "title", "IMIP registration"),
			textElem("", "instructions", l.c.cfg.Instructions),
			elem("", "field", attrs("type", "hidden", "var", "FORM_TYPE"),
				textElem("", "value", nsRegister)),
			formField("text-single", "username", "IMIP number", username),
			formField("text-private", "password", "Password", ""),
			optionFields(opts),
		),
	)
	return elem(nsRegister, "query", nil, children...)
}

// optionFields builds the boolean fields of the registration options.
func optionFields(opts []RegisterOption) xml.TokenReader {
	fields := make([]xml.TokenReader, 0, len(opts))
	for _, o := range opts {
		v := "0"
		if o.Value {
			v = "1"
		}
		fields = append(fields, elem("", "field", attrs("type", "boolean", "var", o.Var, "label", o.Label),
			textElem("", "value", v)))
	}
	return xmlstream.MultiReader(fields...)
}

// parseBool reads a XEP-0004 boolean value.
func parseBool(v string) (b, ok bool) {
	switch v {
	case "1", "true":
		return true, true
	case "0", "false":
		return false, true
	}
	return false, false
}

// formField builds a required data form field.
func formField(typ, name, label, value string) xml.TokenReader {
	children := []xml.TokenReader{textElem("", "required", "")}
	if value != "" {
		children = append(children, textElem("", "value", value))
	}
	return elem("", "field", attrs("type", typ, "var", name, "label", label), children...)
}

// registerSet handles registration (plain fields or a submitted data form)
// and <remove/>; the Registrar runs in its own goroutine.
func (l *link) registerSet(iq stanza.IQ, t xmlstream.TokenReadEncoder, payload *xml.StartElement) error {
	var q wireRegister
	if err := decodeElem(t, *payload, &q); err != nil {
		return err
	}
	if se, ok := registerAllowed(iq); !ok {
		return l.replyError(t, iq, se)
	}
	user := iq.From.Bare()
	if q.Remove != nil {
		return l.async(t, iq, "unregister", func(ctx context.Context) (xml.TokenReader, error) {
			return nil, l.c.h.Unregister(ctx, user)
		})
	}
	var username, password string
	var options map[string]bool
	switch {
	case q.Form != nil && q.Form.Type == "cancel":
		return l.replyResult(t, iq, nil)
	case q.Form != nil:
		username, password = q.Form.value("username"), q.Form.value("password")
		for _, f := range q.Form.Fields {
			if f.Var == "" || f.Var == "FORM_TYPE" || f.Var == "username" || f.Var == "password" || len(f.Values) == 0 {
				continue
			}
			b, ok := parseBool(f.Values[0])
			if !ok {
				continue
			}
			if options == nil {
				options = make(map[string]bool)
			}
			options[f.Var] = b
		}
	default:
		if q.Username != nil {
			username = *q.Username
		}
		if q.Password != nil {
			password = *q.Password
		}
	}
	if username == "" || password == "" {
		// XEP-0077 section 3.1: missing required information is
		// not-acceptable (type modify).
		return l.replyError(t, iq, Error{Condition: stanza.NotAcceptable, Type: stanza.Modify, Text: "username and password are required"}.StanzaError())
	}
	return l.async(t, iq, "register", func(ctx context.Context) (xml.TokenReader, error) {
		if or, ok := l.c.h.(OptionRegistrar); ok {
			return nil, or.RegisterWithOptions(ctx, user, username, password, options)
		}
		return nil, l.c.h.Register(ctx, user, username, password)
	})
}

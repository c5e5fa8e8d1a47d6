package xmppserver

// choosePorts returns the client and component ports: c2s and comp where
// they are set (> 0), distinct free ports on 127.0.0.1 otherwise.
// A fixed port is not checked here: a port in use makes the start fail.
func choosePorts(c2s, comp int) (int, int, error) {
	if c2s > 0 && comp > 0 {
		return c2s, comp, nil
	}
	free, err := freePorts(2)
	if err != nil {
		return 0, 0, err
	}
	switch {
	case c2s <= 0 && comp <= 0:
		return free[0], free[1], nil
	case c2s <= 0:
		return pickOther(free, comp), comp, nil
	default:
		return c2s, pickOther(free, c2s), nil
	}
}

// pickOther returns the first of two distinct ports that is not taken.
func pickOther(free []int, taken int) int {
	if free[0] == taken {
		return free[1]
	}
	return free[0]
}

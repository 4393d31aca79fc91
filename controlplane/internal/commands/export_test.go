package commands

// SetAdoptingHook makes m call f in Adopt between the fleet command's
// joining the commands driven here and its host commands' joining the
// dispatcher (where a cancel may come in).
func SetAdoptingHook(m *Manager, f func(fcID string)) { m.adopting = f }

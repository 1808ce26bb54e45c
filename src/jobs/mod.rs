//! The migration aggregate: commands become events; state is folded from events.

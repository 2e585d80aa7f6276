//! [`Sparse`]: a part of the IR that is nearly always its default, kept out of
//! line so the common case costs one pointer.

use serde::{Serialize, Serializer};
use std::fmt;
use std::ops::{Deref, DerefMut};

/// A `T` stored as `None` while it equals the shared default, `Some(box)` once set.
///
/// A route's filters and policy are each a few hundred bytes and, in a mesh of
/// thousands of services, almost always empty: inline, they were most of a
/// route's size. Reading derefs to the value or to the one shared default, so
/// use sites read `route.policy.retry` as before; writing through `DerefMut`
/// boxes it first. It serializes and prints as the `T` it stands for.
///
/// Invariant: `None` means exactly `T::shared_default()`; `From<T>` keeps a
/// value that equals the default out of line (as `None`).
#[derive(Clone, Default)]
pub struct Sparse<T: SharedDefault>(Option<Box<T>>);

/// A type whose default value exists once, for [`Sparse`] to point at.
pub trait SharedDefault: Default + PartialEq + 'static {
    fn shared_default() -> &'static Self;
}

impl<T: SharedDefault> From<T> for Sparse<T> {
    fn from(v: T) -> Self {
        if v == *T::shared_default() {
            Sparse(None)
        } else {
            Sparse(Some(Box::new(v)))
        }
    }
}

impl<T: SharedDefault> Deref for Sparse<T> {
    type Target = T;

    fn deref(&self) -> &T {
        match &self.0 {
            Some(v) => v,
            None => T::shared_default(),
        }
    }
}

impl<T: SharedDefault> DerefMut for Sparse<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.0.get_or_insert_with(Box::default)
    }
}

impl<T: SharedDefault + fmt::Debug> fmt::Debug for Sparse<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl<T: SharedDefault + Serialize> Serialize for Sparse<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RouteFilters, RoutePolicy};

    /// `None` must read as what `DerefMut` would write, `T::default()`: a
    /// hand-built shared default that drifted from it would make a route read
    /// other filters or policy than one that was ever written to.
    fn holds<T: SharedDefault + fmt::Debug + Clone>(changed: impl FnOnce(&mut T)) {
        assert_eq!(*T::shared_default(), T::default());
        let unset = Sparse::from(T::default());
        assert!(unset.0.is_none(), "the default stays out of line");
        let mut set = unset.clone();
        changed(&mut set);
        assert!(set.0.is_some(), "a write boxes the value");
        assert_ne!(*set, T::default());
        assert!(Sparse::from((*set).clone()).0.is_some());
    }

    #[test]
    fn the_shared_defaults_are_the_defaults() {
        holds::<RouteFilters>(|f| f.request_headers.remove.push("x-a".into()));
        holds::<RoutePolicy>(|p| p.timeout = Some(std::time::Duration::from_secs(3)));
    }
}

//! Publishing server frames to users' devices over the bus.

use std::sync::Arc;

use crate::bus::SharedBus;
use crate::delivery::Delivery;
use crate::domain::frame::ServerFrame;

/// Sends frames to every device of the listed users, wherever they are connected. At-most-once (see
/// [`crate::bus::Bus`]): a failed publish is logged where it fails (the bus), never turned into a failed request,
/// because whatever it carried is durable and reaches the device by sync.
#[derive(Clone)]
pub struct Events {
    bus: SharedBus,
}

impl Events {
    pub fn new(bus: SharedBus) -> Self {
        Self { bus }
    }

    pub async fn publish(&self, users: &[i64], frame: &ServerFrame) {
        self.publish_delivery(users, &Delivery::from_frame(frame)).await;
    }

    pub async fn publish_delivery(&self, users: &[i64], delivery: &Arc<Delivery>) {
        self.bus.publish(users, delivery).await;
    }
}

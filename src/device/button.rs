//! The button: turns input edges into press events.

use tokio::sync::mpsc;

use crate::hardware::Edge;

/// What the button did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ButtonEvent {
    /// A short press.
    Press,
}

impl ButtonEvent {
    /// The event type as Home Assistant's event entity names it.
    pub fn event_type(&self) -> &'static str {
        match self {
            ButtonEvent::Press => "press",
        }
    }
}

/// Watches `edges` and sends a [`ButtonEvent::Press`] for each press, until
/// either side goes away.
pub async fn watch(mut edges: mpsc::Receiver<Edge>, events: mpsc::Sender<ButtonEvent>) {
    while let Some(edge) = edges.recv().await {
        if edge.active && events.send(ButtonEvent::Press).await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::sim;
    use crate::hardware::InputEdges;

    #[tokio::test(start_paused = true)]
    async fn a_press_is_one_event() {
        let (mut input, inj) = sim::input();
        let (tx, mut rx) = mpsc::channel(4);
        tokio::spawn(watch(input.edges().unwrap(), tx));
        inj.press().await;
        assert_eq!(rx.recv().await, Some(ButtonEvent::Press));
        drop(inj);
        assert_eq!(rx.recv().await, None);
    }
}

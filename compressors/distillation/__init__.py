"""Knowledge distillation: a student trained to match a teacher (`distill.knowledge`)."""

"""Using a checkpoint: the generation engine (generate), the loop guard and repair of outputs (repair),
the local sandboxed PlantUML renderer (render), and export outside the studio (export)."""

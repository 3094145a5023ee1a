"""Operations endpoints: health (and later metrics)."""
